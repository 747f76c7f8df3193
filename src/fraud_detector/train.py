"""Stage `train`: preprocessing + classifier as ONE scikit-learn Pipeline, saved with skops.

skops names objects and array files by their memory address (`id()`) and stamps each zip entry
with the wall clock. We renumber the ids in order of appearance and fix the entry times, so the
same commit and params give a bit-identical file (and the same DVC md5).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import skops.io as sio
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from fraud_detector import preprocess
from fraud_detector.config import load_params
from fraud_detector.data import TARGET

TRAIN = Path("data/split/train.parquet")
MODEL = Path("models/fraud-detector/model.skops")
MODELS = {
    "random_forest": RandomForestClassifier,
    "gradient_boosting": GradientBoostingClassifier,
    "logistic_regression": LogisticRegression,
}


def build(params: dict, features: list[str]) -> Pipeline:
    seed = int(params["seed"])
    spec = params["model"]
    if spec["name"] not in MODELS:
        raise SystemExit(f"unknown model {spec['name']!r}: one of {', '.join(MODELS)}")
    kwargs = dict(spec.get("params") or {})
    if spec["name"] == "random_forest":
        kwargs.setdefault("n_jobs", 1)  # threads would not change results, but keep runs comparable
    classifier = MODELS[spec["name"]](random_state=seed, **kwargs)
    return Pipeline([("preprocess", preprocess.build(params["preprocess"], features, seed)), ("model", classifier)])


def _canonical_ids(schema: dict) -> dict[str, str]:
    """Map every memory-address id in the schema (object ids and .npy names) to 1, 2, 3 … in
    order of first appearance."""
    order: dict[str, str] = {}

    def see(value) -> None:
        key = str(value)
        if key not in order:
            order[key] = str(len(order) + 1)

    def walk(node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "__id__":
                    see(v)
                elif k == "file" and isinstance(v, str) and re.fullmatch(r"\d+\.npy", v):
                    see(v[:-4])
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return order


def _renumber(node, ids: dict[str, str]):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "__id__":
                out[k] = int(ids[str(v)])
            elif k == "file" and isinstance(v, str) and v[:-4] in ids and v.endswith(".npy"):
                out[k] = ids[v[:-4]] + ".npy"
            else:
                out[k] = _renumber(v, ids)
        return out
    if isinstance(node, list):
        return [_renumber(v, ids) for v in node]
    return node


def deterministic_dump(model, path: Path) -> None:
    raw = io.BytesIO(sio.dumps(model))
    with zipfile.ZipFile(raw) as src:
        members = {info.filename: src.read(info.filename) for info in src.infolist()}
    schema = json.loads(members.pop("schema.json"))
    ids = _canonical_ids(schema)
    renamed = {"schema.json": json.dumps(_renumber(schema, ids), indent=2).encode()}
    for name, data in members.items():
        stem = name[:-4] if name.endswith(".npy") else None
        renamed[ids[stem] + ".npy" if stem in ids else name] = data
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(renamed):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, renamed[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())


def main() -> None:
    params = load_params()
    train = pd.read_parquet(TRAIN)
    features = [c for c in train.columns if c != TARGET]
    model = build(params, features).fit(train[features], train[TARGET])
    deterministic_dump(model, MODEL)
    print(f"train: {params['model']['name']} + {params['preprocess']['name']} on {len(train)} rows -> {MODEL}")


if __name__ == "__main__":
    main()
