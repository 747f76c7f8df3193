"""Stage `bundle`: the feature schema, the runtime, and a SHA-256 manifest of the bundle's files,
beside the weights and threshold in models/fraud-detector/."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

import pandas as pd

from fraud_detector.config import write_json
from fraud_detector.data import TARGET

TRAIN = Path("data/split/train.parquet")
BUNDLE = Path("models/fraud-detector")
FILES = ("model.skops", "threshold.json", "metrics.json", "feature_schema.json", "runtime.json")
PACKAGES = ("numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "skops")


def feature_schema(train: pd.DataFrame) -> dict:
    features = []
    for name in train.columns:
        if name == TARGET:
            continue
        col = train[name]
        features.append({"name": name, "dtype": str(col.dtype), "min": float(col.min()), "max": float(col.max())})
    return {"features": features, "target": TARGET}


def runtime() -> dict:
    packages = {p: metadata.version(p) for p in PACKAGES}
    lock = hashlib.sha256("\n".join(f"{k}=={v}" for k, v in sorted(packages.items())).encode()).hexdigest()
    return {"python": platform.python_version(), "packages": packages, "lock_sha256": lock}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    write_json(BUNDLE / "feature_schema.json", feature_schema(pd.read_parquet(TRAIN)))
    write_json(BUNDLE / "runtime.json", runtime())
    files = {name: {"sha256": sha256(BUNDLE / name), "size": (BUNDLE / name).stat().st_size} for name in FILES}
    write_json(BUNDLE / "manifest.json", {"schema_version": 1, "model": "fraud-detector", "files": files})
    print(f"bundle: {len(files)} files in {BUNDLE}")


if __name__ == "__main__":
    main()
