"""tether.api.load's result: a verified release and its model, called the way `tether serve`
calls it.

By default the model runs in a worker process (tether.runtime.worker, started through
tether.runtime.workerproc exactly as serve's supervisor starts one): the worker verifies every
byte of the release directory again, imports the release's own entrypoint or a built-in loader
with the release's own sys.path, and answers over the line protocol. Records are validated
against the model's input schema first (tether.runtime.schema.RecordValidator, as serve's
/predict does), so `predict` answers what serve answers for the same records. The worker starts
on the first call and stops with `close()` (or the `with` block, or when the object is
garbage-collected).

`in_process=True` loads the model into the caller's process instead, for the built-in loaders
only (the verifying skops loader, ONNX): an entrypoint is the release's own code, which would
put the release's modules on the caller's sys.path, so it always runs in a worker.
"""

from __future__ import annotations

import sys
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.core.manifest import Manifest
from tether.errors import TetherError, UsageError

if TYPE_CHECKING:
    from tether.library.load import Staged
    from tether.runtime.loaders import Served
    from tether.runtime.protocol import Ready
    from tether.runtime.schema import RecordValidator
    from tether.runtime.workerproc import Worker

READY_TIMEOUT = 300.0  # seconds a worker may take to verify and load (serve's supervisor waits as long)
REQUEST_TIMEOUT = 300.0  # seconds one batch may take


def _frame_type() -> Any:
    """pandas.DataFrame when pandas is imported already (a caller's frame means it is), else
    None: tether never imports pandas to find out."""
    pd = sys.modules.get("pandas")
    return getattr(pd, "DataFrame", None) if pd is not None else None


def _records(data: Any) -> tuple[list, Any]:
    """(the records as a list of dicts, the DataFrame they came from or None)."""
    frame = _frame_type()
    if frame is not None and isinstance(data, frame):
        return data.to_dict("records"), data
    if isinstance(data, dict):
        raise UsageError("records must be a list of dicts (one per record) or a pandas DataFrame, not one dict",
                         hint="wrap a single record in a list: predict([record])")
    try:
        records = list(data)
    except TypeError:
        raise UsageError(f"records must be a list of dicts or a pandas DataFrame, not {type(data).__name__}") from None
    if not records:
        raise UsageError("no records to predict: give at least one")
    bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
    if bad is not None:
        raise UsageError(f"record {bad} is a {type(records[bad]).__name__}, not a dict of feature values")
    return records, None


class LoadedRelease:
    """A release materialised and verified in the load cache (see tether.library.load), and its
    model. Use it in a `with` block, or call `close()`, to stop the model's worker process."""

    def __init__(self, staged: Staged, *, in_process: bool = False) -> None:
        self._staged = staged
        self.in_process = in_process
        self._lock = threading.Lock()
        self._worker: Worker | None = None
        self._served: Served | None = None
        self._hello: Ready | None = None
        self._validator: RecordValidator | None = None
        self._max_records = 1000
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop, [])

    # -- what was loaded ---------------------------------------------------------------------
    @property
    def release(self) -> str:
        """The release tag, e.g. `fraud-detector@v1.2.0`."""
        return self._staged.tag

    @property
    def env(self) -> str | None:
        """The environment the REF named (None when it named a release or `latest`)."""
        return self._staged.env

    @property
    def model(self) -> str:
        return self._staged.manifest["model"]

    @property
    def version(self) -> str:
        return str(self._staged.manifest["version"])

    @property
    def commit(self) -> str:
        return self._staged.manifest["commit"]

    @property
    def manifest(self) -> Manifest:
        """The release's manifest, derived from its commit (a copy: changing it changes nothing)."""
        import copy

        return copy.deepcopy(self._staged.manifest)

    @property
    def path(self) -> Path:
        """The verified release directory: its git tree and its model outputs, read-only."""
        return self._staged.path

    @property
    def threshold(self) -> float | None:
        value = (self._staged.manifest["components"].get("threshold") or {}).get("value")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def reused(self) -> bool:
        """True when an earlier load's copy was verified and reused, False when this load built it."""
        return self._staged.reused

    @property
    def loader(self) -> str:
        """How the model is loaded: `entrypoint`, `skops` or `onnx` (starts the model)."""
        self._start()
        if self._served is not None:
            return self._served.loader
        assert self._hello is not None
        return self._hello.loader

    @property
    def input_schema(self) -> dict | None:
        """The model's input schema (tether.runtime.schema's shape), or None (starts the model)."""
        self._start()
        import copy

        schema = self._served.schema if self._served is not None else self._hello.schema if self._hello else None
        return copy.deepcopy(schema)

    def __repr__(self) -> str:
        how = "in-process" if self.in_process else "worker"
        state = "closed" if self._closed else "running" if (self._worker or self._served) else "not started"
        return f"<LoadedRelease {self.release} ({self.commit[:12]}) at {self.path}: {how}, {state}>"

    # -- predicting --------------------------------------------------------------------------
    def predict(self, records: Any) -> Any:
        """One prediction per record, as `tether serve` answers them (`predictions`): a list of
        dicts (`score`, `decision`, and whatever the release's entrypoint adds), or a DataFrame
        with those columns and the input's index when `records` is a pandas DataFrame."""
        rows, frame = _records(records)
        preds = self._predict(rows)
        if frame is not None:
            return type(frame)(preds, index=frame.index)
        return preds

    def predict_proba(self, records: Any) -> Any:
        """The score (the positive class's probability) of each record: a list of floats, or a
        DataFrame with one column `score` and the input's index for a DataFrame."""
        rows, frame = _records(records)
        preds = self._predict(rows)
        out: list[float] = []
        for p in preds:
            score = p.get("score")
            if not isinstance(score, (int, float)) or isinstance(score, bool):
                raise UsageError(f"{self.release}'s predictions carry no numeric `score`",
                                 hint="use predict(), which returns what the model answers")
            out.append(float(score))
        if frame is not None:
            return type(frame)({"score": out}, index=frame.index)
        return out

    def _predict(self, records: list) -> list[dict]:
        self._start()
        if self._validator is not None:
            clean, errors = self._validator.validate(records)
            if errors:
                shown = "; ".join(f"record {'.'.join(str(x) for x in e['loc'][2:])}: {e['msg']}" for e in errors[:5])
                raise UsageError(f"the records do not fit {self.release}'s input schema: {shown}"
                                 + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""),
                                 hint="see .input_schema for the features and types the model takes")
            records = clean or []
        out: list[dict] = []
        step = self._max_records
        for i in range(0, len(records), step):
            out.extend(self._batch(records[i:i + step]))
        return out

    def _batch(self, records: list) -> list[dict]:
        from tether.runtime.loaders import finite_json

        if self._served is not None:
            preds = self._served.predict(records)
            if not finite_json(preds):
                raise TetherError(f"{self.release}'s model returned NaN or infinity")
            return preds
        from tether.runtime.workerproc import WorkerGone

        worker = self._worker
        if worker is None or not worker.acquire():
            raise UsageError(f"{self.release} is closed", hint="load it again: tether.api.load(...)")
        try:
            reply = worker.request(records, REQUEST_TIMEOUT)
        except WorkerGone as exc:
            raise TetherError(f"{self.release}'s worker stopped: {exc}",
                              hint="its own output (stderr) says why; load it again") from None
        finally:
            worker.release_slot()
        if not reply.ok:
            cls = UsageError if reply.status == 422 else TetherError
            raise cls(f"{self.release}: {reply.error}")
        return reply.predictions or []

    # -- the model's life ------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise UsageError(f"{self.release} is closed", hint="load it again: tether.api.load(...)")
            if self._worker is not None or self._served is not None:
                return
            if self.in_process:
                self._load_here()
            else:
                self._start_worker()

    def _start_worker(self) -> None:
        from tether.runtime.schema import RecordValidator
        from tether.runtime.workerproc import Worker

        worker = Worker(self._staged.cache, self.path)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, [worker])
        hello = worker.wait_ready(READY_TIMEOUT)  # a refusal: the worker's own TetherError (IntegrityError: 6)
        self._worker, self._hello = worker, hello
        self._validator = RecordValidator(hello.schema) if hello.schema else None
        self._max_records = hello.max_records or 1000

    def _load_here(self) -> None:
        """The worker's own steps (tether.runtime.worker._start), in this process, for a
        built-in loader only."""
        from tether.runtime.loaders import ServeConfig, load, release_settings
        from tether.runtime.schema import RecordValidator, parse_features
        from tether.servedir.verify import verify_release_dir

        manifest, _entries, bundle = verify_release_dir(self._staged.cache, self.path)
        settings = release_settings(self.path, manifest["model"])
        config = ServeConfig.from_meta(settings.get("serve"))
        if config.entrypoint:
            raise UsageError(f"{self.release} is served by its own entrypoint ({config.entrypoint}), which runs only "
                             "in a worker process: importing the release's code here would put its modules on "
                             "your sys.path", hint="load it without in_process=True")
        served = load(self.path, manifest, bundle, settings)
        if served.schema is not None:
            parse_features(served.schema)
        self._served = served
        self._validator = RecordValidator(served.schema) if served.schema else None
        self._max_records = config.max_records

    def close(self) -> None:
        """Stop the model's worker (its requests in flight finish first). Idempotent."""
        with self._lock:
            self._closed = True
            worker, self._worker, self._served = self._worker, None, None
        if worker is not None:
            worker.drain_and_stop()
        self._finalizer.detach()

    def __enter__(self) -> LoadedRelease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(workers: list) -> None:
    """At garbage collection or interpreter exit: stop a worker nobody closed."""
    for w in workers:
        try:
            w.stop(grace=2.0)
        except Exception:  # pragma: no cover - best effort at teardown
            pass

