"""An exported release as an MLflow pyfunc model: the `loader_module` of the `python_function`
flavor that `tether export mlflow` writes into every model version it creates.

`mlflow.pyfunc.load_model("models:/NAME@production")` imports this module and calls
`_load_pyfunc(data_path)`, where `data_path` is the release directory logged with the model: the
release's git tree, its model outputs and `.tether/` (the manifest tether derived from git, the
entries it verified, the stamp), materialised and verified by the export exactly as deploy does.
Before anything of the release is imported, every byte is checked again, the way a serving worker
checks its release (tether.servedir.verify.verify_release_dir): a changed, added or removed file
raises IntegrityError and no model comes back. Then the model loads as `tether serve` loads it
(tether.runtime.loaders.load: the release's own entrypoint, else a built-in loader), and
`predict` validates records against the model's schema and answers what `/predict` answers.

No pickle is involved (the flavor names this module, not a pickled object), and nothing here
imports mlflow or tether's CLI: loading needs tether (without extras) and the model's own
libraries in the loading environment.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any

from tether.errors import IntegrityError
from tether.runtime.loaders import Served, load, release_settings
from tether.runtime.schema import RecordValidator, parse_features
from tether.servedir.stamp import manifest_digest
from tether.servedir.verify import verify_release_dir

LOADER_MODULE = __name__
DATA_DIR = "release"  # the release directory's name inside the MLflow model (data/release)


class InvalidRecords(ValueError):
    """Records the model's schema refuses: `/predict` answers these with a 422 and `errors`."""

    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors
        shown = "; ".join(f"{'.'.join(str(x) for x in e['loc'][2:])}: {e['msg']}" for e in errors[:5])
        super().__init__(f"{len(errors)} invalid field(s): {shown}")


class TetherPyfunc:
    """What `mlflow.pyfunc.load_model` returns inside its PyFuncModel: one verified release."""

    def __init__(self, served: Served, manifest: dict, validator: RecordValidator | None) -> None:
        self.served = served
        self.manifest = manifest
        self.validator = validator
        self.release = f"{manifest['model']}@v{manifest['version']}"
        self.threshold = (manifest.get("components", {}).get("threshold") or {}).get("value")

    def predict(self, model_input: Any, params: dict | None = None):
        """A pandas DataFrame (or a list of record dicts, or one dict) in; a DataFrame out, one
        row per record, its columns the fields of `/predict`'s `predictions` (the built-in
        loaders: `score` and `decision`, the release's threshold applied). `attrs["tether"]`
        names the release, its commit and threshold. Invalid records raise InvalidRecords."""
        import pandas as pd

        records = to_records(model_input)
        if not records:
            raise ValueError("no records to predict")
        if self.validator is not None:
            clean, errors = self.validator.validate(records)
            if errors:
                raise InvalidRecords(errors)
            records = clean or []
        out = pd.DataFrame(self.served.predict(records))
        out.attrs["tether"] = {"release": self.release, "commit": self.manifest.get("commit"),
                               "manifest_sha256": manifest_digest(self.manifest), "threshold": self.threshold,
                               "loader": self.served.loader}
        return out


def to_records(model_input: Any) -> list[dict]:
    """Records as `/predict` takes them: a DataFrame's rows (NaN and NA become None, numpy
    scalars plain Python), a list of dicts, or one dict."""
    if isinstance(model_input, dict):
        return [dict(model_input)]
    if isinstance(model_input, list):
        if not all(isinstance(r, dict) for r in model_input):
            raise TypeError("a list of records must hold one dict per record")
        return [dict(r) for r in model_input]
    to_dict = getattr(model_input, "to_dict", None)
    if to_dict is None or not hasattr(model_input, "columns"):
        raise TypeError(f"predict takes a pandas DataFrame or a list of records, not {type(model_input).__name__}")
    return [{str(k): _plain(v) for k, v in row.items()} for row in to_dict(orient="records")]


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # a numpy scalar
    if item is not None and callable(item) and not isinstance(value, (list, dict, str, bytes)):
        with contextlib.suppress(ValueError, TypeError):
            value = item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def load_release(root: Path) -> TetherPyfunc:
    """The release at `root`, verified byte for byte against its manifest, then loaded."""
    root = root.resolve()
    if not (root / ".tether" / "manifest.json").is_file():
        raise IntegrityError(f"{root} is not a release exported by tether (no .tether/manifest.json)",
                             hint="export it again: tether export mlflow")
    manifest, _entries, bundle = verify_release_dir(root.parent, root)
    settings = release_settings(root, manifest["model"])
    before = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # the release stays as verified: no __pycache__ written into it
    try:
        served = load(root, manifest, bundle, settings)
    finally:
        sys.dont_write_bytecode = before
    if served.schema is not None:
        parse_features(served.schema)  # a schema tether serve would refuse is refused here too
    return TetherPyfunc(served, manifest, RecordValidator(served.schema) if served.schema else None)


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> TetherPyfunc:
    """MLflow's entry point (python_function flavor, `loader_module`)."""
    return load_release(Path(data_path))
