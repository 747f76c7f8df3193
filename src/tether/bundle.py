"""The verifying loader: a bundle directory is loaded only after every digest verifies, and the
model only through skops with an explicit list of trusted types, never pickle.

Bundle format (written by the model's pipeline, see src/fraud_detector/bundle.py):
    manifest.json        {"schema_version": 1, "model", "files": {name: {"sha256", "size"}}}
    model.skops          preprocessing + estimator, one scikit-learn Pipeline
    threshold.json       {"value", "source"}
    metrics.json         eval metrics, with "predictions_sha256" of the eval scores
    feature_schema.json  {"features": [{"name", "dtype", "min", "max"}], "target"}
    runtime.json         Python and package versions
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from tether.digest import sha256_file
from tether.errors import IntegrityError, NotFound, UsageError

# Types skops does not trust by default that the reference model families need: the explicit
# allowlist. Anything else a model file names is refused (a skops file can name any importable
# callable). With scikit-learn 1.9 / skops 0.16 the trees of random_forest and gradient_boosting
# need only `Tree` (tests/test_bundle.py checks all six model x preprocess combinations); the
# gradient-boosting loss/link objects and numpy.dtype are data-only types that other scikit-learn
# and skops versions in the supported range report as untrusted. logistic_regression and the
# standard/robust preprocessing need nothing beyond skops' defaults.
TRUSTED_TYPES = (
    "sklearn.tree._tree.Tree",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "numpy.dtype",
)
METRIC_TOLERANCE = 1e-6


class BundleInputError(UsageError):
    """Records that do not fit the feature schema; `fields` names each problem."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__("input does not match the feature schema: " + "; ".join(fields))
        self.fields = fields


def predictions_digest(scores) -> str:
    import numpy as np

    return hashlib.sha256(np.round(np.asarray(scores, dtype="<f8"), 10).tobytes()).hexdigest()


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist") from None
    except ValueError as exc:
        raise IntegrityError(f"{path} is not valid JSON: {exc}") from None


def verify_bundle(path: str | Path) -> dict:
    """Recompute every file's SHA-256 and size against the bundle's manifest.json."""
    path = Path(path)
    if not path.is_dir():
        raise NotFound(f"no bundle at {path}")
    manifest = _json(path / "manifest.json")
    files = manifest.get("files")
    if not isinstance(files, dict) or "model.skops" not in files:
        raise IntegrityError(f"{path}/manifest.json lists no model.skops")
    for name, want in sorted(files.items()):
        f = path / name
        if not f.is_file():
            raise IntegrityError(f"{name} is missing from the bundle at {path}")
        if f.stat().st_size != want.get("size") or sha256_file(f) != want.get("sha256"):
            raise IntegrityError(f"{name} in {path} does not match its SHA-256 in manifest.json: it was modified",
                                 hint="redeploy or re-fetch the release; never load a file that fails its digest")
    return manifest


@dataclass(frozen=True)
class Bundle:
    path: Path
    model: object
    threshold: float
    feature_schema: dict
    metrics: dict
    manifest: dict

    @property
    def features(self) -> list[str]:
        return [f["name"] for f in self.feature_schema["features"]]

    def validate(self, records):
        """Records (a list of objects) or a DataFrame, checked against the feature schema: a
        DataFrame with exactly the schema's columns, in its order and dtypes. Anything else raises
        BundleInputError naming every problem ('<row>.<field>: <what>' for records)."""
        import pandas as pd

        if isinstance(records, pd.DataFrame):
            return self._validate_frame(records)
        if not isinstance(records, list) or not records:
            raise BundleInputError(["records: a non-empty list of objects is required"])
        problems: list[str] = []
        names = self.features
        dtypes = {f["name"]: str(f["dtype"]) for f in self.feature_schema["features"]}
        target = self.feature_schema.get("target")
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                problems.append(f"{i}: not an object")
                continue
            for name in names:
                if name not in rec:
                    problems.append(f"{i}.{name}: missing")
                    continue
                v = rec[name]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    problems.append(f"{i}.{name}: must be a finite number, got {v!r}")
                elif dtypes[name].startswith(("int", "uint")) and v != int(v):
                    problems.append(f"{i}.{name}: must be a whole number, got {v!r}")
            problems += [f"{i}.{k}: unknown field" for k in rec if k not in dtypes and k != target]
        if problems:
            raise BundleInputError(problems[:50])
        frame = pd.DataFrame.from_records(records, columns=names)
        return frame.astype(dtypes)

    def _validate_frame(self, frame):
        import numpy as np
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        dtypes = {f["name"]: str(f["dtype"]) for f in self.feature_schema["features"]}
        target = self.feature_schema.get("target")
        problems = [f"{name}: missing" for name in dtypes if name not in frame.columns]
        problems += [f"{c}: unknown field" for c in frame.columns if c not in dtypes and c != target]
        for name, dtype in dtypes.items():
            if name not in frame.columns:
                continue
            col = frame[name]
            if is_bool_dtype(col.dtype) or not is_numeric_dtype(col.dtype):
                problems.append(f"{name}: must be numeric, got dtype {col.dtype}")
                continue
            values = col.to_numpy(dtype="float64")
            bad = int((~np.isfinite(values)).sum())
            if bad:
                problems.append(f"{name}: must be a finite number ({bad} rows are not)")
            elif dtype.startswith(("int", "uint")) and not (values == np.round(values)).all():
                problems.append(f"{name}: must be a whole number")
        if problems:
            raise BundleInputError(problems[:50])
        return frame[list(dtypes)].astype(dtypes)

    def predict(self, data):
        """(scores, decisions) for records or a DataFrame, validated against the feature schema,
        with the bundle's own preprocessing (inside the model) and its own threshold."""
        import numpy as np

        frame = self.validate(data)
        scores = np.asarray(self.model.predict_proba(frame)[:, 1])
        return scores, scores >= self.threshold


def load_bundle(path: str | Path, trusted: tuple[str, ...] = TRUSTED_TYPES) -> Bundle:
    import skops.io as sio

    path = Path(path)
    manifest = verify_bundle(path)
    model_file = path / "model.skops"
    try:
        untrusted = sio.get_untrusted_types(file=model_file)
    except Exception as exc:
        raise IntegrityError(f"{model_file} is not a readable skops file: {exc}") from None
    refused = sorted(set(untrusted) - set(trusted))
    if refused:
        raise IntegrityError(f"{model_file} contains types outside the trusted list: {', '.join(refused)}",
                             hint="a model file can name any importable callable; review it before trusting it")
    try:
        model = sio.load(model_file, trusted=list(untrusted))
    except Exception as exc:
        raise IntegrityError(f"cannot load {model_file}: {exc}") from None
    threshold = _json(path / "threshold.json")
    return Bundle(path=path, model=model, threshold=float(threshold["value"]),
                  feature_schema=_json(path / "feature_schema.json"), metrics=_json(path / "metrics.json"),
                  manifest=manifest)


def smoke_test(bundle: Bundle, eval_frame) -> dict:
    """Predict the frozen eval slice; the digest and the metrics must be those evaluate recorded."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    target = bundle.feature_schema.get("target", "is_fraud")
    scores, decisions = bundle.predict(eval_frame[bundle.features])
    digest = predictions_digest(scores)
    recorded = bundle.metrics.get("predictions_sha256")
    if digest != recorded:
        raise IntegrityError(f"the bundle's eval predictions do not reproduce (digest {digest[:12]}, recorded "
                             f"{str(recorded)[:12]})", hint="weights, preprocessing or runtime differ from the release")
    y = eval_frame[target].to_numpy()
    got = {
        "roc_auc": float(roc_auc_score(y, scores)),
        "precision": float(precision_score(y, decisions, zero_division=0)),
        "recall": float(recall_score(y, decisions, zero_division=0)),
        "f1": float(f1_score(y, decisions, zero_division=0)),
    }
    off = [f"{k} {v:.6f} vs recorded {bundle.metrics[k]}" for k, v in got.items()
           if k in bundle.metrics and abs(v - float(bundle.metrics[k])) > METRIC_TOLERANCE]
    if off:
        raise IntegrityError("the bundle's eval metrics do not reproduce: " + ", ".join(off))
    return got
