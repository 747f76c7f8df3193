"""Small projects whose metrics a test sets by hand (through params.yaml), built as real git +
DVC repositories with a bare origin and a local DVC remote. One stage (stdlib + PyYAML) writes
the weights, the metrics file and, where the model keeps one, its threshold file.

- `build_metricshape(base, "reference")`: shaped like the reference project: the model
  directory models/fraud-detector/ with model.bin, threshold.json and metrics.json (roc_auc,
  precision, recall, f1, threshold, n_eval, positives).
- `build_metricshape(base, "reports")`: unlike it: one model file models/regressor.bin, the
  metrics in reports/metrics.json (loss, rmse, n_samples), the threshold read from params.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

from project import Project
from shapes import _init, _publish

MAKE = '''\
import json, pathlib, sys, yaml
p = yaml.safe_load(open("params.yaml"))
weights, metrics = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for f in (weights, metrics):
    f.parent.mkdir(parents=True, exist_ok=True)
weights.write_text(json.dumps({"seed": p["seed"], "data": open("data/input.csv").read()}))
metrics.write_text(json.dumps(p["metrics"], sort_keys=True) + "\\n")
if len(sys.argv) > 3:
    pathlib.Path(sys.argv[3]).write_text(json.dumps({"value": p["threshold"], "source": "params.yaml"}))
'''

SHAPES = {
    "reference": {
        "model": "fraud-detector",
        "dvc_yaml": """\
stages:
  train:
    cmd: python src/make.py models/fraud-detector/model.bin models/fraud-detector/metrics.json models/fraud-detector/threshold.json
    deps: [data/input.csv, src/make.py]
    params: [seed, threshold, metrics]
    outs: [models/fraud-detector/model.bin, models/fraud-detector/threshold.json]
    metrics: [models/fraud-detector/metrics.json]
artifacts:
  fraud-detector:
    path: models/fraud-detector
    type: model
    meta:
      tether: {smoke: false, require_staging: false, tolerance: 0.05}
""",
        "metrics": {"roc_auc": 0.9079, "precision": 0.8, "recall": 0.0889, "f1": 0.16, "threshold": 0.7,
                    "n_eval": 1500, "positives": 25},
    },
    "reports": {
        "model": "regressor",
        "dvc_yaml": """\
stages:
  fit:
    cmd: python src/make.py models/regressor.bin reports/metrics.json
    deps: [data/input.csv, src/make.py]
    params: [seed, threshold, metrics]
    outs: [models/regressor.bin]
    metrics:
      - reports/metrics.json:
          cache: false
artifacts:
  regressor:
    path: models/regressor.bin
    type: model
    meta:
      tether:
        smoke: false
        require_staging: false
        threshold: params.yaml:threshold
        metrics: {score: lower, "n_*": info}
""",
        "metrics": {"loss": 0.40, "rmse": 0.63, "score": 10.0, "n_samples": 800},
    },
}


def set_metrics(p: Project, seed: int, **metrics: float) -> None:
    """params.yaml with the shape's metrics changed by `metrics`, reproduced and committed."""
    params = json.loads((p.root / ".shape-metrics.json").read_text())
    params.update(metrics)
    (p.root / ".shape-metrics.json").write_text(json.dumps(params))
    lines = [f"seed: {seed}", "threshold: 0.5", "metrics:"] + [f"  {k}: {v}" for k, v in sorted(params.items())]
    (p.root / "params.yaml").write_text("\n".join(lines) + "\n")
    p.dvc("repro", "-q")
    p.commit_all(f"seed {seed}: {metrics}")
    p.git("push", "-q", "origin", "main")


def release(p: Project) -> str:
    return p.ok("release", "--push", "--json").json()["tag"]


def build_metricshape(base: Path, shape: str) -> Project:
    """The shape with its first release (v1.0.0) made and everything pushed."""
    spec = SHAPES[shape]
    p = _init(base, None)
    (p.root / "src").mkdir()
    (p.root / "src/make.py").write_text(MAKE)
    (p.root / "data").mkdir()
    (p.root / "data/input.csv").write_text("a,b\n1,2\n3,4\n")
    (p.root / "dvc.yaml").write_text(spec["dvc_yaml"])
    (p.root / ".shape-metrics.json").write_text(json.dumps(spec["metrics"]))
    (p.root / ".gitignore").write_text("")
    p.dvc("add", "-q", "data/input.csv")
    _publish_after_first_commit(p)
    set_metrics(p, 1)
    release(p)
    return p


def _publish_after_first_commit(p: Project) -> None:
    p.commit_all("the pipeline's sources")
    _publish(p)
