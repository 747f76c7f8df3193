"""`tether serve`: an HTTP service over DIR/current.

The bundle is loaded only through the verifying loader. A watcher notices when `current` names a
new release and loads it beside the old one; requests keep going to the old bundle until the new
one is verified and loaded, then one reference swap moves them. A release that fails to load is
reported and the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("tether.serve")


@dataclass(frozen=True)
class Loaded:
    release_dir: str
    bundle: object
    manifest: dict
    manifest_sha256: str


class ModelHolder:
    def __init__(self, target: Path) -> None:
        self.target = Path(target).absolute()
        self.loaded: Loaded | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def current_dir(self) -> str | None:
        """The release directory `current` names; IntegrityError when `current` is not the
        symlink into releases/ that deploy makes (see deploy.resolve_current)."""
        from tether.deploy import resolve_current

        real = resolve_current(self.target)
        return str(real) if real is not None else None

    def _refuse(self, msg: str) -> None:
        if msg != self.last_error:
            log.error("%s; still serving %s", msg, self.loaded.manifest["version"] if self.loaded else "nothing")
        self.last_error = msg

    def refresh(self) -> bool:
        """Load what `current` names if it changed. True if a new bundle is now serving."""
        from tether.bundle import load_bundle
        from tether.deploy import manifest_digest, read_release
        from tether.errors import TetherError

        with self._lock:
            try:
                wanted = self.current_dir()
            except TetherError as exc:  # a `current` tether did not make: never switch to it
                self._refuse(f"refusing {self.target / 'current'}: {exc.message}")
                return False
            if wanted is None:
                return False
            if self.loaded and self.loaded.release_dir == wanted:
                self.last_error = None  # back on the release we serve: any refusal is over
                return False
            try:
                manifest, _entries, bundle_dir = read_release(Path(wanted))
                bundle = load_bundle(bundle_dir)
            except Exception as exc:  # keep serving what we have
                self._refuse(f"cannot load {wanted}: {exc}")
                return False
            self.loaded = Loaded(wanted, bundle, manifest, manifest_digest(manifest))
            self.last_error = None
            log.warning("serving %s@v%s (commit %s)", manifest["model"], manifest["version"], manifest["commit"][:12])
            return True

    def watch(self, interval: float, stop: threading.Event) -> None:
        self.refresh()
        while not stop.wait(interval):
            self.refresh()


def create_app(target: Path, watch_interval: float = 1.0):
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse

    holder = ModelHolder(target)
    # Refuse to start over a `current` tether did not make (IntegrityError, exit 6) rather than
    # serve whatever it points at; a target with no `current` yet starts and waits for a deploy.
    holder.current_dir()
    stop = threading.Event()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        # Load in the background: /ready says 503 until a verified bundle is in.
        thread = threading.Thread(target=holder.watch, args=(watch_interval, stop), daemon=True)
        thread.start()
        yield
        stop.set()

    app = FastAPI(title="tether serve", lifespan=lifespan)
    app.state.holder = holder

    @app.get("/ready")
    def ready():
        if holder.loaded is None:
            return JSONResponse({"ready": False, "error": holder.last_error}, status_code=503)
        return {"ready": True, "version": holder.loaded.manifest["version"], "error": holder.last_error}

    @app.get("/version")
    def version():
        if holder.loaded is None:
            raise HTTPException(503, "no verified bundle loaded")
        m = holder.loaded.manifest
        return {"model": m["model"], "version": m["version"], "commit": m["commit"],
                "manifest_sha256": holder.loaded.manifest_sha256,
                "threshold": m["components"]["threshold"]["value"]}

    @app.post("/predict")
    def predict(payload: dict):
        from tether.bundle import BundleInputError

        loaded = holder.loaded  # one read: a hot swap mid-request cannot mix two bundles
        if loaded is None:
            raise HTTPException(503, "no verified bundle loaded")
        records = payload.get("records") if isinstance(payload, dict) else None
        if not isinstance(records, list) or not records:
            return JSONResponse({"detail": [{"loc": ["body", "records"], "msg": "a non-empty list of records is required"}]},
                                status_code=422)
        try:
            frame = loaded.bundle.validate(records)
            scores, decisions = loaded.bundle.predict(frame)
        except BundleInputError as exc:
            return JSONResponse({"detail": [_problem(f) for f in exc.fields]}, status_code=422)
        m = loaded.manifest
        return {"model": m["model"], "version": m["version"],
                "threshold": loaded.bundle.threshold,
                "scores": [float(s) for s in scores], "decisions": [bool(d) for d in decisions]}

    return app


def _problem(field: str) -> dict:
    """'3.amount: missing' -> {"loc": ["body", "records", 3, "amount"], "msg": "missing"}"""
    where, _, msg = field.partition(": ")
    index, _, name = where.partition(".")
    loc = ["body", "records", int(index) if index.isdigit() else index] + ([name] if name else [])
    return {"loc": loc, "msg": msg or field}


def run(target: Path, host: str, port: int, watch_interval: float = 1.0) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(create_app(target, watch_interval), host=host, port=port, log_level="info")
