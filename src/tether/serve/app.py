"""`tether serve`: an HTTP service over DIR/current, one worker process per release.

The server process holds no model. A watcher notices when `current` names another release (or
a rebuilt one) and starts a worker for it in DIR/releases/<id>/ (tether.runtime.worker): the
worker verifies every file against the manifest deploy derived from git, imports the model
through its own entrypoint or a built-in loader with its own sys.path, and runs the smoke test
when the release carries its eval slice. Only when it says `ready` are new requests routed to
it (tether.serve.supervisor); with a canary target, tether.serve.split picks the arm. This
module is the HTTP side: the routes, the request's body, and the answer from the worker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request  # module level: FastAPI resolves the endpoint's annotations here

from tether.core.metricnames import CANARY, STABLE
from tether.runtime.schema import clip
from tether.serve.metrics import ArmView, Metrics
from tether.serve.oip import V2
from tether.serve.split import Split, canary_status, to_canary
from tether.serve.supervisor import Live, Supervisor

log = logging.getLogger("tether.serve")

DEFAULT_MAX_BODY = 1 << 20  # bytes
TARGET_WAIT = 300.0  # seconds `tether serve` waits for a missing --target DIR to appear before it gives up
KEY_HEADER = "x-tether-key"  # a request key: the same key always lands on the same arm


def _parse_int(text: str):
    # Python refuses to parse ints of more than 4300 digits with a ValueError; past any dtype's
    # range anyway, so such a number arrives as infinity and the schema says it is out of range.
    if len(text) > 400:
        return float("-inf") if text.startswith("-") else float("inf")
    return int(text)


def _detail(loc: list, msg: str, status: int = 422):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": [{"loc": loc, "msg": msg}]}, status_code=status)


def _unavailable(error: str | None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": "no verified release is serving", "error": error}, status_code=503)


def create_app(target: Path, watch_interval: float = 1.0, max_body: int = DEFAULT_MAX_BODY,
               request_timeout: float = 60.0, canary_target: Path | None = None,
               target_wait: float | None = None, on_fatal=None, model_name: str | None = None):
    """`canary_target`: a second serving directory (the canary environment's deploy), served
    by its own worker at the weight deploy wrote beside its `current` (DIR/weight.json).
    `target_wait`: seconds a missing `target` may take to appear; then `app.state.supervisor.fatal`
    is set and `on_fatal()` called (run() stops the server and raises it)."""
    from fastapi import FastAPI

    from tether.runtime.zygoteproc import Zygotes

    zygotes = Zygotes()  # one per server: both arms fork their workers from it
    sup = Supervisor(Path(target).absolute(), target_wait=target_wait, zygotes=zygotes)
    # Refuse to start over a `current` tether did not make (IntegrityError, exit 6) rather than
    # serve whatever it points at; a target with no `current` yet starts and waits for a deploy.
    sup.current_dir()
    can = Supervisor(Path(canary_target).absolute(), zygotes=zygotes) if canary_target is not None else None
    if can is not None:
        can.current_dir()
    srv = _Server(sup, can, Split(), Metrics(), max_body, request_timeout, threading.Event())
    sup.stopping = srv.stop
    if can is not None:
        can.stopping = srv.stop

    app = FastAPI(title="tether serve", lifespan=srv.lifespan(watch_interval, on_fatal))
    app.state.supervisor = sup
    app.state.canary = can
    app.get("/ready")(srv.ready)
    app.get("/version")(srv.version)
    app.get("/metrics")(srv.prometheus)
    app.post("/predict")(srv.predict)
    # the Open Inference Protocol (v2) beside them, over the same supervisors, split and metrics
    V2(sup, can, srv.choose, srv.metrics, max_body, request_timeout, model_name).register(app)
    return app


@dataclass
class _Server:
    """The routes of one app over its supervisors (`can`: the canary target's, or None)."""

    sup: Supervisor
    can: Supervisor | None
    split: Split
    metrics: Metrics
    max_body: int
    request_timeout: float
    stop: threading.Event

    def lifespan(self, watch_interval: float, on_fatal):
        from contextlib import asynccontextmanager

        sup, can, stop = self.sup, self.can, self.stop

        @asynccontextmanager
        async def lifespan(_app):
            threads = [threading.Thread(target=sup.watch, args=(watch_interval, stop, on_fatal), daemon=True)]
            if can is not None:
                threads += [threading.Thread(target=can.watch, args=(watch_interval, stop), daemon=True),
                            threading.Thread(target=self.split.watch, args=(can, watch_interval, stop), daemon=True)]
            for t in threads:
                t.start()
            yield
            stop.set()
            for t in threads:
                t.join(10)
            if sup.zygotes is not None:
                sup.zygotes.stop()

        return lifespan

    def arms(self) -> list[ArmView]:
        out: list[ArmView] = []
        sup, can = self.sup, self.can
        live, canary = sup.serving(), can.serving() if can is not None else None  # a dead worker serves nothing
        if live is not None:
            out.append(ArmView(live.worker.name, STABLE if can is not None else None, None, live.hello.eval_scores))
        if canary is not None:
            out.append(ArmView(canary.worker.name, CANARY, self.split.weight_for(canary), canary.hello.eval_scores))
        return out

    def ready(self):
        from fastapi.responses import JSONResponse

        sup, live = self.sup, self.sup.serving()
        extra = {"canary": canary_status(self.can, self.split)} if self.can is not None else {}
        if live is None:
            return JSONResponse({"ready": False, "release": None, "starting": sup.starting, "error": sup.reason(),
                                 **extra}, status_code=503)
        return {"ready": True, "release": live.worker.name, "version": live.hello.version,
                "starting": sup.starting, "error": sup.last_error, **extra}

    def version(self):
        live = self.sup.serving()
        if live is None:
            return _unavailable(self.sup.reason())
        h = live.hello
        return {"release": h.release, "model": h.model, "version": h.version, "commit": h.commit,
                "manifest_sha256": h.manifest_sha256, "threshold": h.threshold, "loader": h.loader,
                "started_at": live.started_at, "pid": h.pid, "smoke": h.smoke,
                "load_seconds": h.load_seconds}

    def prometheus(self):
        from fastapi.responses import PlainTextResponse

        return PlainTextResponse(self.metrics.render(self.arms()), media_type="text/plain; version=0.0.4")

    def choose(self, payload, header_key: str | None) -> tuple[Supervisor, str | None]:
        sup, can = self.sup, self.can
        if can is None:
            return sup, None
        live = can.serving()  # a canary worker that died (and restarts): the stable arm answers
        weight = self.split.weight_for(live) if live is not None else 0
        key = header_key
        if key is None and isinstance(payload, dict) and isinstance(payload.get("key"), (str, int)) \
                and not isinstance(payload.get("key"), bool):
            key = str(payload["key"])
        if live is not None and weight and to_canary(key, weight):
            return can, CANARY
        return sup, STABLE

    def handle(self, body: bytes, header_key: str | None):
        arm0 = STABLE if self.can is not None else None
        if self.sup.serving() is None:  # nothing verified serves: 503 whatever the body, as without a canary
            return _unavailable(self.sup.reason()), None, (), arm0
        try:
            payload = json.loads(body, parse_int=_parse_int)
        except (ValueError, RecursionError) as exc:
            return _detail(["body"], clip(f"not valid JSON: {exc}", 200)), None, (), arm0
        which, arm = self.choose(payload, header_key)
        live = which.live
        while live is not None and not live.worker.acquire():  # draining: the new one is live already
            time.sleep(0.001)
            live = which.live
        if live is None:
            return _unavailable(which.last_error), None, (), arm
        try:
            resp, scores = _answer(live, payload, self.request_timeout)
        finally:
            live.worker.release_slot()
        return resp, live.worker.name, scores, arm

    async def predict(self, request: Request):
        from fastapi.responses import Response
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import ClientDisconnect

        t0, max_body = time.perf_counter(), self.max_body
        declared = request.headers.get("content-length")
        arm = STABLE if self.can is not None else None
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
                resp, name, scores, arm = await run_in_threadpool(self.handle, b"".join(chunks),
                                                                  request.headers.get(KEY_HEADER))
        live = self.sup.live
        return self.metrics.answered(resp, name or (live.worker.name if live else "none"), t0, scores, arm)


def _answer(live: Live, payload, request_timeout: float):
    """The response for one parsed body from the worker of `live` (acquired by the caller)."""
    from fastapi.responses import JSONResponse

    from tether.runtime.workerproc import WorkerGone

    name = live.worker.name
    records = payload.get("records") if isinstance(payload, dict) else None
    if not isinstance(records, list) or not records:
        return _detail(["body", "records"], "a non-empty list of records is required"), ()
    limit = live.hello.max_records or 1000
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
    if not reply.ok:
        status = int(reply.status)
        return _detail(["body", "records"], reply.error, status), ()
    preds = reply.predictions
    if preds is None:  # an ok reply always carries them: a 500, as a reply without them always was
        raise TypeError(f"the worker for {name} replied ok without predictions")
    h = live.hello
    out = {"release": name, "model": h.model, "version": h.version, "commit": h.commit,
           "threshold": h.threshold, "predictions": preds}
    scores = [p["score"] for p in preds if isinstance(p.get("score"), (int, float)) and not isinstance(p.get("score"), bool)]
    if len(scores) == len(preds):
        out["scores"] = scores
    if all(isinstance(p.get("decision"), bool) for p in preds):
        out["decisions"] = [p["decision"] for p in preds]
    return JSONResponse(out), scores


def listen(host: str, port: int):
    """The server's listening socket, bound before anything starts: a busy port is a Conflict
    (exit 4) naming it, another address that cannot be bound a UsageError (exit 2)."""
    import errno
    import socket

    from tether.errors import Conflict, UsageError

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0 to 65535, not {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # connections whose socket says TCP, and uvicorn sends a response's head and body in two
    # writes. With proto 0 every answer waited for the client's delayed ACK: ~40 ms each
    # (measured: GET /version 44 ms against 3 ms; docs/serving.md).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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
        canary_target: Path | None = None, target_wait: float | None = TARGET_WAIT,
        model_name: str | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM (then every worker is stopped and this returns: exit 0).
    Raises Conflict before anything starts on a busy port, and NotFound when a missing
    target has not appeared within `target_wait` seconds."""
    import signal

    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    holder: list = []
    app = create_app(target, watch_interval, max_body, canary_target=canary_target, target_wait=target_wait,
                     on_fatal=lambda: setattr(holder[0], "should_exit", True) if holder else None,
                     model_name=model_name)
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
