"""`tether serve`: an HTTP service over DIR/current, one worker process per release.

The server process holds no model. A watcher notices when `current` names another release (or
a rebuilt one) and starts a worker for it in DIR/releases/<id>/ (tether.worker): the worker
verifies every file against the manifest deploy derived from git, imports the model through its
own entrypoint or a built-in loader with its own sys.path, and runs the smoke test when the
release carries its eval slice. Only when it says `ready` are new requests routed to it; the old
worker is drained (its requests in flight finish) and stopped. A worker that fails leaves the
old one serving, and /ready gives the reason at once. A release that failed is retried when it
is rebuilt (a repairing deploy) and every RETRY_SECONDS otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from fastapi import Request  # module level: FastAPI resolves the endpoint's annotations here

from tether.runtime.schema import RecordValidator, clip
from tether.serve.metrics import Metrics

if TYPE_CHECKING:
    from tether.runtime.workerproc import Worker

log = logging.getLogger("tether.serve")

DEFAULT_MAX_BODY = 1 << 20  # bytes
RETRY_SECONDS = 5.0
READY_TIMEOUT = 300.0
TARGET_WAIT = 300.0  # seconds `tether serve` waits for a missing --target DIR to appear before it gives up
KEY_HEADER = "x-tether-key"  # a request key: the same key always lands on the same arm


@dataclass
class Live:
    """A ready worker and what the server needs to route to it."""

    worker: Worker
    key: tuple
    hello: dict
    validator: RecordValidator | None
    started_at: str


def to_canary(key: str | None, weight: int, rand=None) -> bool:
    """Deterministic by key: SHA-256 of the key into 10,000 slots, the first weight % of them
    the canary's (a key keeps its arm while the weight rises). No key: at random."""
    if weight <= 0:
        return False
    if weight >= 100:
        return True
    if key is None:
        import random

        return (rand or random.random)() * 100 < weight
    import hashlib

    slot = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 10_000
    return slot < weight * 100


class Preempted(Exception):
    """A starting worker is no longer wanted: `current` moved on, or the server is stopping."""


@dataclass
class Supervisor:
    target: Path
    live: Live | None = None
    starting: str | None = None
    last_error: str | None = None
    failed: dict = field(default_factory=dict)  # key -> (error, when)
    spares: bool = True
    spare: Worker | None = None
    poll: float = 0.2  # seconds between a starting worker's checks that `current` still names it
    stopping: threading.Event = field(default_factory=threading.Event)
    target_wait: float | None = None  # give up (self.fatal, exit 3) if the target has not appeared by then
    fatal: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def current_dir(self) -> Path | None:
        """The release directory `current` names; IntegrityError when `current` is not the
        symlink into releases/ that deploy makes (see deploy.resolve_current)."""
        from tether.servedir.layout import resolve_current

        return resolve_current(self.target)

    def serving(self) -> Live | None:
        """The live worker if its process is still running: a worker killed under load is not
        ready, whatever it was a moment ago (the watcher restarts it)."""
        live = self.live
        return live if live is not None and live.worker.alive() else None

    def reason(self) -> str | None:
        """Why nothing (or not the wanted release) serves, for /ready and a 503."""
        live = self.live
        if live is not None and not live.worker.alive():
            return self.last_error or f"the worker for {live.worker.name} exited (status {live.worker.status()})"
        if live is None and self.last_error is None and self.starting is None and not self.target.is_dir():
            return self._missing()
        return self.last_error

    def _missing(self) -> str:
        wait = f"waits up to {self.target_wait:g} s" if self.target_wait is not None else "waits"
        return (f"{self.target} does not exist: nothing is deployed there (serve {wait} for "
                f"`tether deploy --target {self.target}`)")

    def _refuse(self, msg: str) -> None:
        if msg != self.last_error:
            live = self.serving()
            log.error("%s; still serving %s", msg, live.worker.name if live else "nothing")
        self.last_error = msg

    def refresh(self) -> bool:
        """Start a worker for what `current` names if it changed. True if it now serves. A start
        is preempted when `current` moves on while the worker is still starting (a release that
        hangs at import never holds up the rollback deployed after it)."""
        from tether.errors import TetherError
        from tether.runtime.workerproc import Worker, identity

        with self._lock:
            while True:
                try:
                    wanted = self.current_dir()
                except TetherError as exc:  # a `current` tether did not make: never switch to it
                    self._refuse(f"refusing {self.target / 'current'}: {exc.message}")
                    return False
                if wanted is None:
                    return False
                key = identity(wanted)
                if self.live and self.live.key == key:
                    if self.live.worker.alive():
                        self.last_error = None  # back on the release we serve: any refusal is over
                        return False
                    self._refuse(f"the worker for {wanted.name} exited (status {self.live.worker.status()}); "
                                 "restarting it")
                seen = self.failed.get(key)
                if seen and time.monotonic() - seen[1] < RETRY_SECONDS:
                    self.last_error = seen[0]
                    return False
                if self.stopping.is_set():
                    return False
                self.starting = wanted.name
                worker, self.spare = self.spare, None
                if worker is not None and worker.alive():
                    worker.assign(wanted)
                else:
                    worker = Worker(self.target, wanted)
                try:
                    hello = self._wait_ready(worker, key)
                    validator = RecordValidator(hello["schema"]) if hello.get("schema") else None
                except Preempted as exc:
                    worker.kill()
                    self.starting = None
                    log.warning("stopped starting %s: %s", wanted.name, exc)
                    if self.stopping.is_set():
                        return False
                    self._new_spare()
                    continue  # what `current` names now
                except Exception as exc:
                    worker.kill()
                    why = str(getattr(exc, "message", None) or exc)
                    why = why[len(wanted.name) + 2:] if why.startswith(f"{wanted.name}: ") else why
                    msg = f"refusing {wanted.name}: {why}"
                    self.failed[key] = (msg, time.monotonic())
                    self.starting = None
                    self._refuse(msg)
                    self._new_spare()
                    return False
                break
            old = self.live
            self.live = Live(worker, key, hello, validator, _iso(worker.started_at))
            self.failed.pop(key, None)
            self.starting = None
            self.last_error = None
            log.warning("serving %s (commit %s, %s loader, pid %s, smoke: %s)", wanted.name, hello["commit"][:12],
                        hello["loader"], hello.get("pid"), hello.get("smoke"))
        if old is not None:
            threading.Thread(target=old.worker.drain_and_stop, daemon=True).start()
        self._new_spare()
        return True

    def _wait_ready(self, worker: Worker, key: tuple) -> dict:
        """The worker's ready line; Preempted as soon as `current` names another release (or
        another build of it) or the server stops, checked every `poll` seconds."""
        from concurrent.futures import TimeoutError as FutureTimeout

        from tether.errors import TetherError
        from tether.runtime.workerproc import identity

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                return worker.ready.result(max(0.0, min(self.poll, deadline - time.monotonic())))
            except FutureTimeout:
                pass
            if self.stopping.is_set():
                raise Preempted("the server is stopping")
            if time.monotonic() >= deadline:
                raise TetherError(f"the worker for {worker.name} was not ready within {READY_TIMEOUT:.0f} s")
            try:
                now = self.current_dir()
            except TetherError:
                continue  # a `current` tether did not make preempts nothing: it is refused later
            if now is not None and identity(now) != key:
                raise Preempted(f"{self.target / 'current'} now names {now.name}")

    def _new_spare(self) -> None:
        """The next swap's process, importing its libraries now (niced where it can be), so a
        swap costs the verification and the model's load, not a cold interpreter."""
        from tether.runtime.workerproc import Worker

        if self.spares and self.spare is None:
            self.spare = Worker(self.target, None)

    def watch(self, interval: float, stop: threading.Event, on_fatal=None) -> None:
        """Follow `current` until `stop`. With `target_wait`, a target that has not appeared
        within it is fatal: `self.fatal` is set and `on_fatal()` called (the server exits 3)."""
        from tether.errors import NotFound

        self.stopping = stop
        t0, seen = time.monotonic(), self.target_wait is None
        if not seen and not self.target.is_dir():
            log.warning("%s", self._missing())
        while not stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # never let the watcher die
                log.exception("watcher: %s", exc)
            if not seen:
                seen = self.target.is_dir()
                if not seen and self.target_wait is not None and time.monotonic() - t0 >= self.target_wait:
                    self.fatal = NotFound(
                        f"{self.target} never appeared: nothing was deployed there within {self.target_wait:g} s",
                        hint=f"check --target for a typo, deploy first (`tether deploy --env ENV --target "
                             f"{self.target}`), or wait longer with --target-wait SECONDS")
                    if on_fatal is not None:
                        on_fatal()
                    break
            stop.wait(interval)
        if self.live:
            self.live.worker.stop()
        if self.spare:
            self.spare.stop()


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_int(text: str):
    # Python refuses to parse ints of more than 4300 digits with a ValueError; past any dtype's
    # range anyway, so such a number arrives as infinity and the schema says it is out of range.
    if len(text) > 400:
        return float("-inf") if text.startswith("-") else float("inf")
    return int(text)


def _detail(loc: list, msg: str, status: int = 422):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": [{"loc": loc, "msg": msg}]}, status_code=status)


def create_app(target: Path, watch_interval: float = 1.0, max_body: int = DEFAULT_MAX_BODY,
               request_timeout: float = 60.0, canary_target: Path | None = None,
               target_wait: float | None = None, on_fatal=None):
    """`canary_target`: a second serving directory (the canary environment's deploy), served
    by its own worker at the weight deploy wrote beside its `current` (DIR/weight.json).
    `target_wait`: seconds a missing `target` may take to appear; then `app.state.supervisor.fatal`
    is set and `on_fatal()` called (run() stops the server and raises it)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    sup = Supervisor(Path(target).absolute(), target_wait=target_wait)
    # Refuse to start over a `current` tether did not make (IntegrityError, exit 6) rather than
    # serve whatever it points at; a target with no `current` yet starts and waits for a deploy.
    sup.current_dir()
    can = Supervisor(Path(canary_target).absolute(), spares=False) if canary_target is not None else None
    if can is not None:
        can.current_dir()
    split = Split()
    metrics = Metrics()
    stop = threading.Event()
    sup.stopping = stop
    if can is not None:
        can.stopping = stop

    @asynccontextmanager
    async def lifespan(_app):
        threads = [threading.Thread(target=sup.watch, args=(watch_interval, stop, on_fatal), daemon=True)]
        if can is not None:
            threads += [threading.Thread(target=can.watch, args=(watch_interval, stop), daemon=True),
                        threading.Thread(target=split.watch, args=(can, watch_interval, stop), daemon=True)]
        for t in threads:
            t.start()
        yield
        stop.set()
        for t in threads:
            t.join(10)

    app = FastAPI(title="tether serve", lifespan=lifespan)
    app.state.supervisor = sup
    app.state.canary = can

    def arms() -> list:
        out: list[tuple[Live, str | None, int | None]] = []
        live, canary = sup.serving(), can.serving() if can is not None else None  # a dead worker serves nothing
        if live is not None:
            out.append((live, "stable" if can is not None else None, None))
        if canary is not None:
            out.append((canary, "canary", split.weight_for(canary)))
        return out

    @app.get("/ready")
    def ready():
        live = sup.serving()
        extra = {"canary": _canary_status(can, split)} if can is not None else {}
        if live is None:
            return JSONResponse({"ready": False, "release": None, "starting": sup.starting, "error": sup.reason(),
                                 **extra}, status_code=503)
        return {"ready": True, "release": live.worker.name, "version": live.hello["version"],
                "starting": sup.starting, "error": sup.last_error, **extra}

    @app.get("/version")
    def version():
        live = sup.serving()
        if live is None:
            return JSONResponse({"detail": "no verified release is serving", "error": sup.reason()}, status_code=503)
        h = live.hello
        return {"release": h["release"], "model": h["model"], "version": h["version"], "commit": h["commit"],
                "manifest_sha256": h["manifest_sha256"], "threshold": h["threshold"], "loader": h["loader"],
                "started_at": live.started_at, "pid": h.get("pid"), "smoke": h.get("smoke"),
                "load_seconds": h.get("load_seconds")}

    @app.get("/metrics")
    def prometheus():
        return PlainTextResponse(metrics.render(arms()), media_type="text/plain; version=0.0.4")

    def choose(payload, header_key: str | None) -> tuple[Supervisor, str | None]:
        if can is None:
            return sup, None
        live = can.serving()  # a canary worker that died (and restarts): the stable arm answers
        weight = split.weight_for(live) if live is not None else 0
        key = header_key
        if key is None and isinstance(payload, dict) and isinstance(payload.get("key"), (str, int)) \
                and not isinstance(payload.get("key"), bool):
            key = str(payload["key"])
        if live is not None and weight and to_canary(key, weight):
            return can, "canary"
        return sup, "stable"

    def handle(body: bytes, header_key: str | None):
        arm0 = "stable" if can is not None else None
        if sup.serving() is None:  # nothing verified serves: 503 whatever the body, as without a canary
            return JSONResponse({"detail": "no verified release is serving", "error": sup.reason()},
                                status_code=503), None, (), arm0
        try:
            payload = json.loads(body, parse_int=_parse_int)
        except (ValueError, RecursionError) as exc:
            return _detail(["body"], clip(f"not valid JSON: {exc}", 200)), None, (), arm0
        which, arm = choose(payload, header_key)
        live = which.live
        while live is not None and not live.worker.acquire():  # draining: the new one is live already
            time.sleep(0.001)
            live = which.live
        if live is None:
            return JSONResponse({"detail": "no verified release is serving", "error": which.last_error},
                                status_code=503), None, (), arm
        try:
            resp, scores = _answer(live, payload, request_timeout)
        finally:
            live.worker.release_slot()
        return resp, live.worker.name, scores, arm

    @app.post("/predict")
    async def predict(request: Request):
        t0 = time.perf_counter()
        declared = request.headers.get("content-length")
        arm = "stable" if can is not None else None
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            resp, name, scores = _detail(["body"], f"the body is larger than {max_body} bytes", 413), None, ()
        else:
            chunks, size = [], 0
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_body:
                        break
                    chunks.append(chunk)
            except ClientDisconnect:  # nobody to answer: one line, no traceback, not a request served
                client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
                log.warning("%s disconnected after %d of %s body bytes; nothing answered", client, size,
                            declared or "unknown")
                return Response(status_code=400)
            if size > max_body:
                resp, name, scores = _detail(["body"], f"the body is larger than {max_body} bytes", 413), None, ()
            else:
                resp, name, scores, arm = await run_in_threadpool(handle, b"".join(chunks),
                                                                  request.headers.get(KEY_HEADER))
        live = sup.live
        name = name or (live.worker.name if live else "none")
        resp.headers["x-tether-release"] = name
        if arm is not None:
            resp.headers["x-tether-arm"] = arm
        metrics.observe(name, resp.status_code, time.perf_counter() - t0, scores, arm)
        return resp

    return app


def _answer(live: Live, payload, request_timeout: float):
    """The response for one parsed body from the worker of `live` (acquired by the caller)."""
    from fastapi.responses import JSONResponse

    from tether.runtime.workerproc import WorkerGone

    name = live.worker.name
    records = payload.get("records") if isinstance(payload, dict) else None
    if not isinstance(records, list) or not records:
        return _detail(["body", "records"], "a non-empty list of records is required"), ()
    limit = live.hello.get("max_records") or 1000
    if len(records) > limit:
        return _detail(["body", "records"], f"at most {limit} records per request, got {len(records)}"), ()
    if any(not isinstance(r, dict) for r in records):
        i = next(i for i, r in enumerate(records) if not isinstance(r, dict))
        return _detail(["body", "records", i], "a record must be an object"), ()
    if live.validator is not None:
        clean, errors = live.validator.validate(records)
        if errors:
            return JSONResponse({"detail": errors}, status_code=422), ()
        records = clean or []
    try:
        reply = live.worker.request(records, request_timeout)
    except WorkerGone as exc:
        return JSONResponse({"detail": str(exc)}, status_code=503), ()
    if not reply.get("ok"):
        status = int(reply.get("status", 500))
        return _detail(["body", "records"], reply.get("error", "failed"), status), ()
    preds = reply["predictions"]
    h = live.hello
    out = {"release": name, "model": h["model"], "version": h["version"], "commit": h["commit"],
           "threshold": h["threshold"], "predictions": preds}
    scores = [p["score"] for p in preds if isinstance(p.get("score"), (int, float)) and not isinstance(p.get("score"), bool)]
    if len(scores) == len(preds):
        out["scores"] = scores
    if all(isinstance(p.get("decision"), bool) for p in preds):
        out["decisions"] = [p["decision"] for p in preds]
    return JSONResponse(out), scores


class Split:
    """The canary's weight as deploy wrote it (DIR/weight.json), re-read every interval. It
    applies only to the release it names: a canary worker for any other release gets nothing."""

    def __init__(self) -> None:
        self.release: str | None = None
        self.weight = 0

    def weight_for(self, live: Live | None) -> int:
        return self.weight if live is not None and live.worker.name == self.release else 0

    def read(self, can: Supervisor) -> None:
        from tether.servedir.weight import read_weight_file

        got = read_weight_file(can.target)
        self.release, self.weight = got if got else (None, 0)

    def watch(self, can: Supervisor, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.read(can)
            except Exception as exc:  # never let the watcher die
                log.exception("weight watcher: %s", exc)
            stop.wait(interval)


def _canary_status(can: Supervisor, split: Split) -> dict:
    live = can.serving()
    return {"release": live.worker.name if live else None, "weight": split.weight_for(live),
            "starting": can.starting, "error": can.reason()}


def listen(host: str, port: int):
    """The server's listening socket, bound before anything starts: a busy port is a Conflict
    (exit 4) naming it, another address that cannot be bound a UsageError (exit 2)."""
    import errno
    import socket

    from tether.errors import Conflict, UsageError

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0 to 65535, not {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart over TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(f"port {port} on {host} is already in use: another process listens there",
                           hint=f"stop it (`ss -ltnp 'sport = :{port}'` names it) or serve on another --port") from None
        raise UsageError(f"cannot listen on {host} port {port}: {exc.strerror or exc}",
                         hint="check --host (an address of this machine) and --port") from None
    return sock


def run(target: Path, host: str, port: int, watch_interval: float = 1.0, max_body: int = DEFAULT_MAX_BODY,
        canary_target: Path | None = None, target_wait: float | None = TARGET_WAIT) -> None:
    """Serve until Ctrl-C or SIGTERM (then every worker is stopped and this returns: exit 0).
    Raises Conflict before anything starts on a busy port, and NotFound when a missing
    target has not appeared within `target_wait` seconds."""
    import signal

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    holder: list = []
    app = create_app(target, watch_interval, max_body, canary_target=canary_target, target_wait=target_wait,
                     on_fatal=lambda: setattr(holder[0], "should_exit", True) if holder else None)
    sock = listen(host, port)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    holder.append(server)
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it
    # found: make that one a no-op, so Ctrl-C ends here, after the shutdown, and not in a
    # KeyboardInterrupt while the worker threads finish.
    stopped: list = []
    previous = {sig: signal.signal(sig, lambda s, _f: stopped.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if app.state.supervisor.fatal is not None:
        raise app.state.supervisor.fatal
    log.warning("stopped%s", f" on {signal.Signals(stopped[0]).name}" if stopped else "")
