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

# Types skops does not trust by default that the reference model families need. Anything else
# found in a model file is refused: a skops file can name any importable callable.
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


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"{path} does not exist") from None
    except ValueError as exc:
        raise IntegrityError(f"{path} is not valid JSON: {exc}") from None


def is_bundle(path: str | Path, manifest_file: str = "manifest.json") -> bool:
    """A tether serving bundle (the reference project's shape): a directory with a bundle
    manifest. Any other model (a pickle, an ONNX file, a directory of weights) is verified by
    the release's own digests alone; its format is not tether's business."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / manifest_file).is_file()


def verify_bundle(path: str | Path) -> dict:
    """Recompute every file's SHA-256 and size against the bundle's manifest.json."""
    path = Path(path)
    if not path.is_dir():
        raise NotFound(f"no bundle at {path}")
    manifest = read_json(path / "manifest.json")
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
        """A DataFrame in schema order, or BundleInputError naming every bad field."""
        import pandas as pd

        if isinstance(records, pd.DataFrame):
            records = records.to_dict("records")
        if not isinstance(records, list) or not records:
            raise BundleInputError(["records: a non-empty list of objects is required"])
        problems: list[str] = []
        names = self.features
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                problems.append(f"{i}: not an object")
                continue
            for name in names:
                if name not in rec:
                    problems.append(f"{i}.{name}: missing")
                    continue
                v = rec[name]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
                    problems.append(f"{i}.{name}: must be a finite number, got {v!r}")
            problems += [f"{i}.{k}: unknown field" for k in rec if k not in names and k != self.feature_schema.get("target")]
        if problems:
            raise BundleInputError(problems[:50])
        frame = pd.DataFrame.from_records(records, columns=names)
        for f in self.feature_schema["features"]:
            if f["dtype"].startswith("int") and not (frame[f["name"]] % 1 == 0).all():
                problems.append(f"{f['name']}: must be a whole number")
            else:
                frame[f["name"]] = frame[f["name"]].astype(f["dtype"])
        if problems:
            raise BundleInputError(problems)
        return frame

    def predict(self, data):
        """(scores, decisions) with the bundle's own preprocessing and threshold."""
        import numpy as np
        import pandas as pd

        frame = data if isinstance(data, pd.DataFrame) else self.validate(data)
        scores = self.model.predict_proba(frame[self.features])[:, 1]
        return scores, np.asarray(scores >= self.threshold)


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
    threshold = read_json(path / "threshold.json")
    return Bundle(path=path, model=model, threshold=float(threshold["value"]),
                  feature_schema=read_json(path / "feature_schema.json"), metrics=read_json(path / "metrics.json"),
                  manifest=manifest)


def smoke_test(bundle: Bundle, eval_frame, sink: list | None = None) -> dict:
    """Predict the frozen eval slice; the digest and the metrics must be those evaluate recorded.
    `sink` receives the scores once they match the recorded digest."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    target = bundle.feature_schema.get("target", "is_fraud")
    scores, decisions = bundle.predict(eval_frame[bundle.features])
    digest = predictions_digest(scores)
    recorded = bundle.metrics.get("predictions_sha256")
    if digest != recorded:
        raise IntegrityError(f"the bundle's eval predictions do not reproduce (digest {digest[:12]}, recorded "
                             f"{str(recorded)[:12]})", hint="weights, preprocessing or runtime differ from the release")
    if sink is not None:
        sink.extend(float(s) for s in scores)
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
