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

from fastapi import Request  # module level: FastAPI resolves the endpoint's annotations here

from tether.schema import RecordValidator, clip

log = logging.getLogger("tether.serve")

DEFAULT_MAX_BODY = 1 << 20  # bytes
RETRY_SECONDS = 5.0
READY_TIMEOUT = 300.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class Live:
    """A ready worker and what the server needs to route to it."""

    worker: object
    key: tuple
    hello: dict
    validator: RecordValidator | None
    started_at: str


class Metrics:
    """Per-release counters and histograms, rendered in Prometheus' text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.errors: dict[str, int] = {}
        self.latency: dict[str, list] = {}
        self.scores: dict[str, list] = {}

    @staticmethod
    def _hist(store: dict, release: str, buckets: tuple, value: float) -> None:
        h = store.setdefault(release, [[0] * len(buckets), 0, 0.0])
        for i, b in enumerate(buckets):
            if value <= b:
                h[0][i] += 1
        h[1] += 1
        h[2] += value

    def observe(self, release: str, status: int, seconds: float, scores: list[float] = ()) -> None:
        with self._lock:
            self.requests[(release, status)] = self.requests.get((release, status), 0) + 1
            if status >= 400:
                self.errors[release] = self.errors.get(release, 0) + 1
            self._hist(self.latency, release, LATENCY_BUCKETS, seconds)
            for s in scores:
                self._hist(self.scores, release, SCORE_BUCKETS, s)

    def render(self, live: str | None) -> str:
        out = ["# HELP tether_release_info The release serving now (value 1).", "# TYPE tether_release_info gauge"]
        if live:
            out.append(f'tether_release_info{{release="{live}"}} 1')
        out += ["# HELP tether_requests_total /predict requests by release and HTTP status.",
                "# TYPE tether_requests_total counter"]
        with self._lock:
            for (rel, code), n in sorted(self.requests.items()):
                out.append(f'tether_requests_total{{release="{rel}",code="{code}"}} {n}')
            out += ["# HELP tether_request_errors_total /predict requests answered with a 4xx or 5xx.",
                    "# TYPE tether_request_errors_total counter"]
            for rel, n in sorted(self.errors.items()):
                out.append(f'tether_request_errors_total{{release="{rel}"}} {n}')
            for name, store, buckets, help_ in (
                    ("tether_request_duration_seconds", self.latency, LATENCY_BUCKETS, "/predict latency in the server."),
                    ("tether_score", self.scores, SCORE_BUCKETS, "Scores the model returned.")):
                out += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
                for rel, (counts, n, total) in sorted(store.items()):
                    for b, c in zip(buckets, counts):
                        out.append(f'{name}_bucket{{release="{rel}",le="{b}"}} {c}')
                    out.append(f'{name}_bucket{{release="{rel}",le="+Inf"}} {n}')
                    out.append(f'{name}_sum{{release="{rel}"}} {total:.6f}')
                    out.append(f'{name}_count{{release="{rel}"}} {n}')
        return "\n".join(out) + "\n"


@dataclass
class Supervisor:
    target: Path
    live: Live | None = None
    starting: str | None = None
    last_error: str | None = None
    failed: dict = field(default_factory=dict)  # key -> (error, when)
    spares: bool = True
    spare: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def current_dir(self) -> Path | None:
        """The release directory `current` names; IntegrityError when `current` is not the
        symlink into releases/ that deploy makes (see deploy.resolve_current)."""
        from tether.deploy import resolve_current

        return resolve_current(self.target)

    def _refuse(self, msg: str) -> None:
        if msg != self.last_error:
            log.error("%s; still serving %s", msg, self.live.worker.name if self.live else "nothing")
        self.last_error = msg

    def refresh(self) -> bool:
        """Start a worker for what `current` names if it changed. True if it now serves."""
        from tether.errors import TetherError
        from tether.workerproc import Worker, identity

        with self._lock:
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
                self._refuse(f"the worker for {wanted.name} died; restarting it")
            seen = self.failed.get(key)
            if seen and time.monotonic() - seen[1] < RETRY_SECONDS:
                self.last_error = seen[0]
                return False
            self.starting = wanted.name
            worker, self.spare = self.spare, None
            if worker is not None and worker.alive():
                worker.assign(wanted)
            else:
                worker = Worker(self.target, wanted)
            try:
                hello = worker.wait_ready(READY_TIMEOUT)
                validator = RecordValidator(hello["schema"]) if hello.get("schema") else None
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

    def _new_spare(self) -> None:
        """The next swap's process, importing its libraries now (niced where it can be), so a
        swap costs the verification and the model's load, not a cold interpreter."""
        from tether.workerproc import Worker

        if self.spares and self.spare is None:
            self.spare = Worker(self.target, None)

    def watch(self, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # never let the watcher die
                log.exception("watcher: %s", exc)
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
               request_timeout: float = 60.0):
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse
    from starlette.concurrency import run_in_threadpool

    sup = Supervisor(Path(target).absolute())
    # Refuse to start over a `current` tether did not make (IntegrityError, exit 6) rather than
    # serve whatever it points at; a target with no `current` yet starts and waits for a deploy.
    sup.current_dir()
    metrics = Metrics()
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_app):
        thread = threading.Thread(target=sup.watch, args=(watch_interval, stop), daemon=True)
        thread.start()
        yield
        stop.set()
        thread.join(10)

    app = FastAPI(title="tether serve", lifespan=lifespan)
    app.state.supervisor = sup

    @app.get("/ready")
    def ready():
        live = sup.live
        if live is None:
            return JSONResponse({"ready": False, "release": None, "starting": sup.starting, "error": sup.last_error},
                                status_code=503)
        return {"ready": True, "release": live.worker.name, "version": live.hello["version"],
                "starting": sup.starting, "error": sup.last_error}

    @app.get("/version")
    def version():
        live = sup.live
        if live is None:
            return JSONResponse({"detail": "no verified release is serving", "error": sup.last_error}, status_code=503)
        h = live.hello
        return {"release": h["release"], "model": h["model"], "version": h["version"], "commit": h["commit"],
                "manifest_sha256": h["manifest_sha256"], "threshold": h["threshold"], "loader": h["loader"],
                "started_at": live.started_at, "pid": h.get("pid"), "smoke": h.get("smoke"),
                "load_seconds": h.get("load_seconds")}

    @app.get("/metrics")
    def prometheus():
        live = sup.live
        return PlainTextResponse(metrics.render(live.worker.name if live else None),
                                 media_type="text/plain; version=0.0.4")

    def handle(body: bytes, t0: float):
        live = sup.live
        while live is not None and not live.worker.acquire():  # draining: the new one is live already
            time.sleep(0.001)
            live = sup.live
        if live is None:
            return JSONResponse({"detail": "no verified release is serving", "error": sup.last_error},
                                status_code=503), None, ()
        name = live.worker.name
        try:
            try:
                payload = json.loads(body, parse_int=_parse_int)
            except (ValueError, RecursionError) as exc:
                return _detail(["body"], clip(f"not valid JSON: {exc}", 200)), name, ()
            records = payload.get("records") if isinstance(payload, dict) else None
            if not isinstance(records, list) or not records:
                return _detail(["body", "records"], "a non-empty list of records is required"), name, ()
            limit = live.hello.get("max_records") or 1000
            if len(records) > limit:
                return _detail(["body", "records"], f"at most {limit} records per request, got {len(records)}"), name, ()
            if any(not isinstance(r, dict) for r in records):
                i = next(i for i, r in enumerate(records) if not isinstance(r, dict))
                return _detail(["body", "records", i], "a record must be an object"), name, ()
            if live.validator is not None:
                clean, errors = live.validator.validate(records)
                if errors:
                    return JSONResponse({"detail": errors}, status_code=422), name, ()
                records = clean
            from tether.workerproc import WorkerGone

            try:
                reply = live.worker.request(records, request_timeout)
            except WorkerGone as exc:
                return JSONResponse({"detail": str(exc)}, status_code=503), name, ()
        finally:
            live.worker.release_slot()
        if not reply.get("ok"):
            status = int(reply.get("status", 500))
            return _detail(["body", "records"], reply.get("error", "failed"), status), name, ()
        preds = reply["predictions"]
        h = live.hello
        out = {"release": name, "model": h["model"], "version": h["version"], "commit": h["commit"],
               "threshold": h["threshold"], "predictions": preds}
        scores = [p["score"] for p in preds if isinstance(p.get("score"), (int, float)) and not isinstance(p.get("score"), bool)]
        if len(scores) == len(preds):
            out["scores"] = scores
        if all(isinstance(p.get("decision"), bool) for p in preds):
            out["decisions"] = [p["decision"] for p in preds]
        return JSONResponse(out), name, scores

    @app.post("/predict")
    async def predict(request: Request):
        t0 = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            resp, name, scores = _detail(["body"], f"the body is larger than {max_body} bytes", 413), None, ()
        else:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body:
                    break
                chunks.append(chunk)
            if size > max_body:
                resp, name, scores = _detail(["body"], f"the body is larger than {max_body} bytes", 413), None, ()
            else:
                resp, name, scores = await run_in_threadpool(handle, b"".join(chunks), t0)
        live = sup.live
        name = name or (live.worker.name if live else "none")
        resp.headers["x-tether-release"] = name
        metrics.observe(name, resp.status_code, time.perf_counter() - t0, scores)
        return resp

    return app


def run(target: Path, host: str, port: int, watch_interval: float = 1.0, max_body: int = DEFAULT_MAX_BODY) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(create_app(target, watch_interval, max_body), host=host, port=port, log_level="warning")
