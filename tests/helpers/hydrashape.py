"""A Hydra repository shaped the way issue 26 found the gates disagreeing between clones:

    .dvc/config  [hydra] enabled = true   (DVC composes conf/ into params.yaml on `dvc exp run`;
                                           there is NO compose stage, `dvc repro` never composes)
    conf/config.yaml, conf/train/{both,weak}.yaml   -> params.yaml (committed, composed)
    data/train.csv, data/eval.csv (dvc add)          the model lives among them:
    train    -> data/model.json (the weights) + data/model_params.json (beside them)
    evaluate -> reports/metrics.json (DVC-cached metrics OUTSIDE the model's path, with
                predictions_sha256, accuracy, f1), threshold = params evaluate.threshold
    src/shop/serve.py:Model, the serving entrypoint; it imports src/shop/records.py, which no
    stage runs. requirements.lock at the root.

The stage scripts use the standard library (and numpy/scikit-learn for the metrics and the
predictions digest the smoke test recomputes), so `dvc repro` stays fast.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

from project import Project
from shapes import _init, _publish

MODEL = "shop"

DVC_YAML = """\
stages:
  train:
    cmd: python src/shop/train.py
    deps:
      - data/train.csv
      - src/shop/train.py
    params:
      - seed
      - train
    outs:
      - data/model.json
      - data/model_params.json
  evaluate:
    cmd: python src/shop/evaluate.py
    deps:
      - data/model.json
      - data/eval.csv
      - src/shop/evaluate.py
    params:
      - evaluate.threshold
    metrics:
      - reports/metrics.json

artifacts:
  shop:
    path: data/model.json
    type: model
    meta:
      tether:
        eval_data: data/eval.csv
        serve:
          entrypoint: src/shop/serve.py:Model
"""

CONF = {
    "config.yaml": "defaults:\n  - train: both\n  - _self_\nseed: 3\nevaluate:\n  threshold: 0.5\n",
    "train/both.yaml": "features: [x1, x2]\nscale: 1.0\n",
    "train/weak.yaml": "features: [x2]\nscale: 1.0\n",
}

SCRIPTS = {
    "train.py": '''\
        """Fit a linear scorer: the class-mean difference on the chosen features."""
        import csv
        import json
        from pathlib import Path

        import yaml

        p = yaml.safe_load(Path("params.yaml").read_text())
        rows = list(csv.DictReader(Path("data/train.csv").read_text().splitlines()))
        w = {}
        for f in ("x1", "x2"):
            pos = [float(r[f]) for r in rows if r["label"] == "1"]
            neg = [float(r[f]) for r in rows if r["label"] == "0"]
            w[f] = (sum(pos) / len(pos) - sum(neg) / len(neg)) * p["train"]["scale"] if f in p["train"]["features"] else 0.0
        mid = {f: sum(float(r[f]) for r in rows) / len(rows) for f in ("x1", "x2")}
        bias = -sum(w[f] * mid[f] for f in w)
        Path("data/model.json").write_text(json.dumps({"w": w, "b": bias}, sort_keys=True) + "\\n")
        Path("data/model_params.json").write_text(json.dumps({"seed": p["seed"], **p["train"]}, sort_keys=True) + "\\n")
    ''',
    "evaluate.py": '''\
        """Score data/eval.csv; metrics (and the predictions digest) to reports/metrics.json."""
        import hashlib
        import json
        import math
        from pathlib import Path

        import numpy as np
        import pandas as pd
        import yaml
        from sklearn.metrics import accuracy_score, f1_score

        threshold = yaml.safe_load(Path("params.yaml").read_text())["evaluate"]["threshold"]
        m = json.loads(Path("data/model.json").read_text())
        frame = pd.read_csv("data/eval.csv")
        scores = []
        for r in frame[["x1", "x2"]].to_dict("records"):
            z = m["w"]["x1"] * float(r["x1"]) + m["w"]["x2"] * float(r["x2"]) + m["b"]
            scores.append(1 / (1 + math.exp(-z)))
        s = np.asarray(scores, dtype="<f8")
        y = frame["label"].to_numpy() == 1
        dec = s >= threshold
        Path("reports").mkdir(exist_ok=True)
        Path("reports/metrics.json").write_text(json.dumps({
            "accuracy": float(accuracy_score(y, dec)), "f1": float(f1_score(y, dec, zero_division=0)),
            "n_eval": len(scores),
            "predictions_sha256": hashlib.sha256(np.round(s, 10).tobytes()).hexdigest()}, sort_keys=True) + "\\n")
    ''',
    "records.py": '''\
        """Serving-side input handling (no stage runs this)."""


        def features(record):
            return float(record["x1"]), float(record["x2"])
    ''',
    "serve.py": '''\
        """The serving entrypoint: the model file, the threshold from the release's params.yaml."""
        import json
        import math
        from pathlib import Path

        import yaml

        from shop.records import features


        class Model:
            def __init__(self, bundle):
                self.m = json.loads(Path(bundle).read_text())
                root = Path(bundle).resolve().parents[1]
                self.threshold = yaml.safe_load((root / "params.yaml").read_text())["evaluate"]["threshold"]

            def predict(self, records):
                out = []
                for r in records:
                    x1, x2 = features(r)
                    z = self.m["w"]["x1"] * x1 + self.m["w"]["x2"] * x2 + self.m["b"]
                    s = 1 / (1 + math.exp(-z))
                    out.append({"score": s, "decision": bool(s >= self.threshold)})
                return out
    ''',
}


def table(seed: int, n: int) -> str:
    rng = random.Random(seed)
    lines = ["x1,x2,label"]
    for _ in range(n):
        label = rng.randint(0, 1)
        x1 = round(rng.gauss(1.5 if label else 0.0, 0.8), 4)
        x2 = round(rng.gauss(0.4 if label else 0.0, 1.0), 4)
        lines.append(f"{x1},{x2},{label}")
    return "\n".join(lines) + "\n"


def params_yaml(features: list[str], threshold: float, scale: float = 1.0) -> str:
    """params.yaml exactly as DVC's Hydra composition of conf/ writes it."""
    feats = "".join(f"  - {f}\n" for f in features)
    return f"train:\n  features:\n{feats}  scale: {scale}\nseed: 3\nevaluate:\n  threshold: {threshold}\n"


def build_hydrashape(base: Path) -> Project:
    """`base/project` (git main, pushed to `base/origin.git`), the local DVC remote `base/dvcstore`
    EMPTY (nothing pushed), nothing released."""
    p = _init(base, None)
    root = p.root
    p.dvc("config", "hydra.enabled", "true")
    for rel, text in CONF.items():
        (root / "conf" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "conf" / rel).write_text(text)
    (root / "params.yaml").write_text(params_yaml(["x1", "x2"], 0.5))
    src = root / "src" / "shop"
    src.mkdir(parents=True)
    for name, body in SCRIPTS.items():
        (src / name).write_text(textwrap.dedent(body))
    (root / "data").mkdir()
    (root / "data/train.csv").write_text(table(1, 300))
    (root / "data/eval.csv").write_text(table(2, 200))
    (root / "requirements.lock").write_text("numpy==1.26.4\npandas==2.2.2\nscikit-learn==1.5.0\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    p.dvc("add", "-q", "data/train.csv", "data/eval.csv")
    p.dvc("repro", "-q")
    p.commit_all("shop model: Hydra (hydra.enabled), model among the data, metrics in reports/")
    _publish(p)
    return p


def set_conf(p: Project, *, train: str | None = None, threshold: float | None = None) -> None:
    """Edit conf/ and write params.yaml as its composition (what `dvc exp run` would), then repro."""
    import re

    cfg = p.root / "conf/config.yaml"
    text = cfg.read_text()
    if train is not None:
        text = re.sub(r"train: \w+", f"train: {train}", text)
    if threshold is not None:
        text = re.sub(r"threshold: [0-9.]+", f"threshold: {threshold}", text)
    cfg.write_text(text)
    cur_train = re.search(r"train: (\w+)", text).group(1)  # type: ignore[union-attr]
    cur_threshold = float(re.search(r"threshold: ([0-9.]+)", text).group(1))  # type: ignore[union-attr]
    feats = ["x1", "x2"] if cur_train == "both" else ["x2"]
    (p.root / "params.yaml").write_text(params_yaml(feats, cur_threshold))
    p.dvc("repro", "-q")
