"""A text classifier served by its own code: raw text in, the project's featurisation, a pickle
model, and a serving entrypoint in the release's tree (`src/serve.py:Model`):

    data/reviews.csv (dvc add) -> prepare -> data/train.csv, data/eval.csv
        -> train (src/textclf/featurize.py) -> models/textclf/ {model.pkl, threshold.json}
        -> evaluate (src/serve.py, the serving code itself) -> eval/metrics.json
           {accuracy, predictions_sha256}

`featurize.VERSION` names the featurisation, and `Model.predict` returns it with every
prediction, so a test can tell which release's code answered. `set_featurizer(p, "v2")` swaps
in different featurisation code (word bigrams as well as words).
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from project import Project
from servehelp import OPS
from shapes import _init, _publish, raw_reviews

DVC_YAML = """\
stages:
  prepare:
    cmd: python src/textclf/prepare.py
    deps:
      - data/reviews.csv
      - src/textclf/prepare.py
    params:
      - seed
    outs:
      - data/train.csv
      - data/eval.csv
  train:
    cmd: PYTHONPATH=src python src/textclf/train.py
    deps:
      - data/train.csv
      - src/textclf/featurize.py
      - src/textclf/train.py
    params:
      - train.alpha
      - evaluate.threshold
    outs:
      - models/textclf
  evaluate:
    cmd: PYTHONPATH=src python src/textclf/evaluate.py
    deps:
      - data/eval.csv
      - models/textclf
      - src/serve.py
      - src/textclf/featurize.py
      - src/textclf/evaluate.py
    params:
      - evaluate.threshold
    metrics:
      - eval/metrics.json:
          cache: false

artifacts:
  textclf:
    path: models/textclf
    type: model
    meta:
      tether:
        eval_data: data/eval.csv
        serve:
          entrypoint: src/serve.py:Model
"""

PARAMS = "seed: 3\ntrain:\n  alpha: 1.0\nevaluate:\n  threshold: 0.5\n"

FEATURIZE = {
    "v1": '''\
        """Featurisation v1: lower-cased words."""
        VERSION = "v1"


        def tokens(text):
            return text.lower().split()
    ''',
    "v2": '''\
        """Featurisation v2: lower-cased words and word bigrams."""
        VERSION = "v2"


        def tokens(text):
            words = text.lower().split()
            return words + [a + "_" + b for a, b in zip(words, words[1:])]
    ''',
}

SOURCES = {
    "src/textclf/__init__.py": "",
    "src/textclf/prepare.py": '''\
        import csv
        import random
        from pathlib import Path

        import yaml

        seed = yaml.safe_load(Path("params.yaml").read_text())["seed"]
        rows = list(csv.DictReader(Path("data/reviews.csv").open()))
        random.Random(seed).shuffle(rows)
        n = len(rows) // 4
        for name, part in (("eval", rows[:n]), ("train", rows[n:])):
            with open(f"data/{name}.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=["text", "label"])
                w.writeheader()
                w.writerows(part)
    ''',
    "src/textclf/train.py": '''\
        """Multinomial naive Bayes over the project's own tokens; a pickle and its threshold."""
        import collections
        import csv
        import json
        import math
        import pickle
        from pathlib import Path

        import yaml

        from textclf.featurize import tokens

        params = yaml.safe_load(Path("params.yaml").read_text())
        rows = list(csv.DictReader(Path("data/train.csv").open()))
        alpha = params["train"]["alpha"]
        labels = sorted({r["label"] for r in rows})
        vocab = sorted({t for r in rows for t in tokens(r["text"])})
        model = {"vocab": vocab, "labels": labels, "log_prior": {}, "log_lik": {}, "unk": {}}
        for label in labels:
            docs = [tokens(r["text"]) for r in rows if r["label"] == label]
            counts = collections.Counter(t for d in docs for t in d)
            total = sum(counts.values()) + alpha * (len(vocab) + 1)
            model["log_prior"][label] = math.log(len(docs) / len(rows))
            model["log_lik"][label] = {t: math.log((counts[t] + alpha) / total) for t in vocab}
            model["unk"][label] = math.log(alpha / total)
        out = Path("models/textclf")
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
        (out / "threshold.json").write_text(json.dumps({"value": params["evaluate"]["threshold"]}) + "\\n")
    ''',
    "src/textclf/evaluate.py": '''\
        """Score the eval split with the serving code itself; record accuracy and the digest of
        the scores the smoke test reproduces."""
        import csv
        import hashlib
        import json
        from pathlib import Path

        import numpy as np

        from serve import Model

        rows = list(csv.DictReader(Path("data/eval.csv").open()))
        preds = Model(Path("models/textclf")).predict([{"text": r["text"]} for r in rows])
        scores = [p["score"] for p in preds]
        correct = sum(p["decision"] == (r["label"] == "pos") for p, r in zip(preds, rows))
        digest = hashlib.sha256(np.round(np.asarray(scores, dtype="<f8"), 10).tobytes()).hexdigest()
        Path("eval").mkdir(exist_ok=True)
        Path("eval/metrics.json").write_text(json.dumps({"accuracy": round(correct / len(rows), 6),
                                                         "predictions_sha256": digest}) + "\\n")
    ''',
    "src/serve.py": '''\
        """How this project is served: tether imports Model from the release's own tree."""
        import json
        import math
        import pickle

        from textclf import featurize


        class Model:
            input_schema = {"features": [{"name": "text", "dtype": "string", "max_length": 5000}],
                            "target": "label"}

            def __init__(self, bundle_dir):
                # a pickle is this project's own choice: tether never unpickles by itself
                self.m = pickle.loads((bundle_dir / "model.pkl").read_bytes())
                self.threshold = json.loads((bundle_dir / "threshold.json").read_text())["value"]

            def score(self, text):
                toks = featurize.tokens(text)
                m = self.m
                s = {lab: m["log_prior"][lab] + sum(m["log_lik"][lab].get(t, m["unk"][lab]) for t in toks)
                     for lab in m["labels"]}
                top = max(s.values())
                return math.exp(s.get("pos", top) - top) / sum(math.exp(v - top) for v in s.values())

            def predict(self, records):
                out = []
                for r in records:
                    p = self.score(r["text"])
                    out.append({"score": p, "decision": p >= self.threshold, "label": "pos" if p >= self.threshold
                                else "neg", "featurizer": featurize.VERSION, "tokens": len(featurize.tokens(r["text"]))})
                return out
    ''',
}


def write_reviews(root: Path) -> None:
    lines = ["text,label"]
    for text in raw_reviews(seed=5, files=2, per_file=40).values():
        for line in text.splitlines():
            label, _, words = line.partition("\t")
            lines.append(f"{words},{label}")
    (root / "data").mkdir(exist_ok=True)
    (root / "data/reviews.csv").write_text("\n".join(lines) + "\n")


def set_featurizer(p: Project, version: str) -> None:
    (p.root / "src/textclf/featurize.py").write_text(textwrap.dedent(FEATURIZE[version]))


def build_textserve(base: Path) -> Project:
    p = _init(base, None)
    (p.root / "dvc.yaml").write_text(DVC_YAML)
    (p.root / "params.yaml").write_text(PARAMS)
    for rel, body in SOURCES.items():
        (p.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (p.root / rel).write_text(textwrap.dedent(body))
    set_featurizer(p, "v1")
    (p.root / ".gitignore").write_text("__pycache__/\n")
    write_reviews(p.root)
    p.dvc("add", "-q", "data/reviews.csv")
    p.dvc("repro", "-q")
    p.commit_all("text classifier served by its own entrypoint")
    _publish(p)
    return p


def hang_when(p, marker) -> None:
    """The serving entrypoint sleeps at import while `marker` exists (a release whose import hangs
    on one host, or on a restart, but passed its smoke gate when it was promoted)."""
    path = p.root / "src/serve.py"
    text = path.read_text()
    head = '"""How this project is served: tether imports Model from the release\'s own tree."""\n'
    assert head in text
    path.write_text(text.replace(head, head + f"import os as _os\nimport time as _time\n\n"
                                 f"if _os.path.exists({str(marker)!r}):\n    _time.sleep(600)\n"))


def release(p, message: str) -> str:
    p.dvc("repro", "-q")
    p.commit_all(message)
    return p.ok("release", "--push", "--json").json()["tag"]


def promote(p, tag: str, cwd=None) -> None:
    p.ok("promote", tag, "--env", "production", *OPS, "--skip-staging", "test", "--allow-regression", "test", "--push",
         cwd=cwd)


def deploy(p, target, cwd=None) -> float:
    """Deploy production to `target`; the monotonic time it returned."""
    res = p.tether("deploy", "--env", "production", "--target", str(target), cwd=cwd)
    assert res.code == 0, res.err
    return time.monotonic()


def served_project(tmp_path):
    """The text classifier's v1 released, promoted (pushed) and deployed to tmp_path/serving."""
    p = build_textserve(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    promote(p, v1)
    target = tmp_path / "serving"
    deploy(p, target)
    return p, v1, target
