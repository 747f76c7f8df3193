"""Projects shaped unlike the reference one, built as real git + DVC repositories in a given
directory. `build_textclf` makes a small text classifier whose every output is a DIRECTORY:

    data/raw/ (dvc add) -> prepare -> data/prepared/ -> featurize -> data/features/
                        -> train -> models/textclf/ {model.pkl, threshold.json, metrics.json}
                        -> evaluate -> eval/metrics.json (metrics, cache: false)

The stage scripts (src/textclf/*.py) use the standard library and PyYAML only, so a whole
`dvc repro` stays fast. The DVC remote starts EMPTY: nothing is pushed.
"""

from __future__ import annotations

import json
import os
import random
import textwrap
from pathlib import Path

from project import BIN, Project

DIR_OUTPUTS = ("data/raw", "data/prepared", "data/features", "models/textclf")

DVC_YAML = """\
stages:
  prepare:
    cmd: python src/textclf/prepare.py
    deps:
      - data/raw
      - src/textclf/prepare.py
    params:
      - seed
      - prepare.eval_fraction
    outs:
      - data/prepared
  featurize:
    cmd: python src/textclf/featurize.py
    deps:
      - data/prepared
      - src/textclf/featurize.py
    params:
      - featurize.max_features
    outs:
      - data/features
  train:
    cmd: python src/textclf/train.py
    deps:
      - data/features
      - src/textclf/train.py
    params:
      - train.alpha
      - evaluate.threshold
    outs:
      - models/textclf
  evaluate:
    cmd: python src/textclf/evaluate.py
    deps:
      - data/features
      - models/textclf
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
    desc: Bag-of-words naive Bayes sentiment classifier (directory outputs throughout)
    meta:
      tether:
        smoke: false
"""

PARAMS = """\
seed: 7
prepare:
  eval_fraction: 0.25
featurize:
  max_features: 40
train:
  alpha: 1.0
evaluate:
  threshold: 0.5
"""

SCRIPTS = {
    "prepare.py": '''\
        """Read data/raw/*.txt (label<TAB>text lines), normalise, shuffle, split."""
        import json
        import random
        from pathlib import Path

        import yaml

        params = yaml.safe_load(Path("params.yaml").read_text())
        rows = []
        for path in sorted(Path("data/raw").glob("*.txt")):
            for line in path.read_text().splitlines():
                label, _, text = line.partition("\\t")
                if text:
                    rows.append((label, " ".join(text.lower().split())))
        random.Random(params["seed"]).shuffle(rows)
        n_eval = max(1, int(len(rows) * params["prepare"]["eval_fraction"]))
        out = Path("data/prepared")
        out.mkdir(parents=True, exist_ok=True)
        for name, part in (("eval.tsv", rows[:n_eval]), ("train.tsv", rows[n_eval:])):
            (out / name).write_text("".join(f"{label}\\t{text}\\n" for label, text in part))
        (out / "labels.json").write_text(json.dumps(sorted({label for label, _ in rows})) + "\\n")
    ''',
    "featurize.py": '''\
        """Vocabulary from the training split; every text as a list of vocabulary indices."""
        import collections
        import json
        from pathlib import Path

        import yaml

        params = yaml.safe_load(Path("params.yaml").read_text())


        def read(name):
            rows = []
            for line in Path("data/prepared", name).read_text().splitlines():
                label, _, text = line.partition("\\t")
                rows.append((label, text.split()))
            return rows


        train, evals = read("train.tsv"), read("eval.tsv")
        counts = collections.Counter(w for _, words in train for w in words)
        vocab = sorted(w for w, _ in counts.most_common(params["featurize"]["max_features"]))
        index = {w: i for i, w in enumerate(vocab)}
        out = Path("data/features")
        out.mkdir(parents=True, exist_ok=True)
        (out / "vocab.json").write_text(json.dumps(vocab) + "\\n")
        for name, rows in (("train.json", train), ("eval.json", evals)):
            feats = [[label, [index[w] for w in words if w in index]] for label, words in rows]
            (out / name).write_text(json.dumps(feats) + "\\n")
    ''',
    "train.py": '''\
        """Multinomial naive Bayes by hand; the model, its threshold and its metrics in one directory."""
        import json
        import math
        import pickle
        from pathlib import Path

        import yaml

        params = yaml.safe_load(Path("params.yaml").read_text())
        feats = Path("data/features")
        vocab = json.loads((feats / "vocab.json").read_text())
        train = json.loads((feats / "train.json").read_text())
        evals = json.loads((feats / "eval.json").read_text())
        alpha = params["train"]["alpha"]
        labels = sorted({label for label, _ in train})
        model = {"vocab": vocab, "labels": labels, "log_prior": {}, "log_lik": {}}
        for label in labels:
            docs = [ids for lab, ids in train if lab == label]
            counts = [alpha] * len(vocab)
            for ids in docs:
                for i in ids:
                    counts[i] += 1
            total = sum(counts)
            model["log_prior"][label] = math.log(len(docs) / len(train))
            model["log_lik"][label] = [round(math.log(c / total), 12) for c in counts]


        def p_positive(ids):
            score = {lab: model["log_prior"][lab] + sum(model["log_lik"][lab][i] for i in ids) for lab in labels}
            top = max(score.values())
            norm = sum(math.exp(s - top) for s in score.values())
            return math.exp(score.get("pos", top) - top) / norm


        threshold = params["evaluate"]["threshold"]
        correct = sum((p_positive(ids) >= threshold) == (lab == "pos") for lab, ids in evals)
        out = Path("models/textclf")
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
        (out / "threshold.json").write_text(json.dumps({"value": threshold, "source": "params: evaluate.threshold"}) + "\\n")
        (out / "metrics.json").write_text(json.dumps({"accuracy": round(correct / len(evals), 6), "n_eval": len(evals)}) + "\\n")
    ''',
    "evaluate.py": '''\
        """Score the eval split with the trained model directory."""
        import json
        import math
        import pickle
        from pathlib import Path

        import yaml

        params = yaml.safe_load(Path("params.yaml").read_text())
        model = pickle.loads(Path("models/textclf/model.pkl").read_bytes())
        evals = json.loads(Path("data/features/eval.json").read_text())
        threshold = params["evaluate"]["threshold"]
        labels = model["labels"]
        correct = 0
        for label, ids in evals:
            score = {lab: model["log_prior"][lab] + sum(model["log_lik"][lab][i] for i in ids) for lab in labels}
            top = max(score.values())
            p = math.exp(score.get("pos", top) - top) / sum(math.exp(s - top) for s in score.values())
            correct += (p >= threshold) == (label == "pos")
        Path("eval").mkdir(exist_ok=True)
        Path("eval/metrics.json").write_text(json.dumps({"accuracy": round(correct / len(evals), 6)}) + "\\n")
    ''',
}

POSITIVE = "great wonderful loved superb brilliant delightful charming moving fun clever".split()
NEGATIVE = "awful boring hated dull terrible clumsy tedious bland weak messy".split()
NEUTRAL = "the movie plot film acting story cast scenes music ending was and a really".split()


def raw_reviews(seed: int = 11, files: int = 4, per_file: int = 30) -> dict[str, str]:
    """A few small text files of `label<TAB>review` lines, deterministic."""
    rng = random.Random(seed)
    out = {}
    for f in range(files):
        lines = []
        for _ in range(per_file):
            label = rng.choice(("pos", "neg"))
            words = rng.choices(POSITIVE if label == "pos" else NEGATIVE, k=rng.randint(1, 3))
            words += rng.choices(NEUTRAL, k=rng.randint(3, 8))
            rng.shuffle(words)
            lines.append(f"{label}\t{' '.join(words)}\n")
        out[f"reviews_{f:02d}.txt"] = "".join(lines)
    return out


def write_sources(root: Path, raw_files: int = 4) -> None:
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text(PARAMS)
    src = root / "src" / "textclf"
    src.mkdir(parents=True, exist_ok=True)
    for name, body in SCRIPTS.items():
        (src / name).write_text(textwrap.dedent(body))
    raw = root / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    reviews = raw_reviews() if raw_files == 4 else raw_reviews(files=raw_files, per_file=1)
    for name, text in reviews.items():
        (raw / name).write_text(text)


def build_textclf(base: Path, s3: dict | None = None, raw_files: int = 4) -> Project:
    """In `base`: `project/` (git `main`, DVC, reproduced and committed, pushed to the bare
    `origin.git`), and an empty DVC remote: the local directory `dvcstore/` (configured with
    --local, like tests/helpers/project.py), or with `s3` ({"endpoint", "url"}, e.g. the `s3_remote`
    fixture) an S3 remote committed in .dvc/config, credentials left to the environment.
    `raw_files`: how many files `data/raw/` holds (one review each beyond the default 4)."""
    p = Project(Path(base))
    p.root.mkdir(parents=True)
    p.git("init", "-q", "-b", "main")
    p.git("config", "user.name", "Tess Tether")
    p.git("config", "user.email", "tess@example.com")
    p.dvc("init", "-q")
    if s3 is None:
        p.store.mkdir(parents=True, exist_ok=True)
        p.dvc("remote", "add", "--local", "-f", "-d", "local", str(p.store))
    else:
        p.dvc("remote", "add", "-f", "-d", "s3", s3["url"])
        p.dvc("remote", "modify", "s3", "endpointurl", s3["endpoint"])
    write_sources(p.root, raw_files)
    p.dvc("add", "-q", "data/raw")
    p.dvc("repro", "-q")
    p.commit_all("text classifier with directory outputs")
    p.git("init", "-q", "--bare", str(p.origin))
    p.git("remote", "add", "origin", str(p.origin))
    p.git("push", "-q", "origin", "main")
    return p


def clone(p: Project, dest: Path, rev: str | None = None, local_remote: bool = True) -> Path:
    """A fresh `git clone` of the bare origin (optionally at `rev`), with the same local DVC
    remote configured when the project uses one. Its DVC cache is empty."""
    p.sh("git", "clone", "-q", str(p.origin), str(dest), cwd=dest.parent)
    if rev:
        p.git("checkout", "-q", rev, cwd=dest)
    if local_remote and p.store.exists():
        p.sh(os.path.join(BIN, "dvc"), "remote", "add", "--local", "-f", "-d", "local", str(p.store), cwd=dest)
    return dest


def lock_outputs(root: Path) -> dict[str, str]:
    """{path: md5} of every DVC-tracked directory in dvc.lock and the .dvc files."""
    import yaml

    out = {}
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for entry in (stage.get("outs") or []) + (stage.get("deps") or []):
            if entry.get("md5", "").endswith(".dir"):
                out[entry["path"]] = entry["md5"]
    for dvcfile in root.rglob("*.dvc"):
        if not dvcfile.is_file() or dvcfile.relative_to(root).parts[0] in (".dvc", ".git"):
            continue
        for entry in yaml.safe_load(dvcfile.read_text()).get("outs") or []:
            path = (dvcfile.parent / entry["path"]).relative_to(root).as_posix()
            out[path] = entry["md5"]
    return out


def listing(cache_or_store: Path, md5: str) -> list[dict]:
    """The JSON listing of a `.dir` object in a DVC 3 cache or local remote directory."""
    return json.loads(object_path(cache_or_store, md5).read_text())


def object_path(cache_or_store: Path, md5: str) -> Path:
    """`<dir>/files/md5/ab/cdef…` (a local remote and `.dvc/cache` share the layout)."""
    return cache_or_store / "files" / "md5" / md5[:2] / md5[2:]


# -- the text classifier: threshold only on the evaluating stage, dvclive-style metrics --
LIVE_DVC_YAML = """\
stages:
  prepare:
    cmd: python src/textclf/prepare.py
    deps:
      - data/raw
      - src/textclf/prepare.py
    params:
      - seed
      - prepare.eval_fraction
    outs:
      - data/prepared
  featurize:
    cmd: python src/textclf/featurize.py
    deps:
      - data/prepared
      - src/textclf/featurize.py
    params:
      - featurize.max_features
    outs:
      - data/features
  train:
    cmd: python src/textclf/train.py
    deps:
      - data/features
      - src/textclf/train.py
    params:
      - train.alpha
    outs:
      - models/textclf
  evaluate:
    cmd: python src/textclf/evaluate.py
    deps:
      - data/features
      - models/textclf
      - src/textclf/evaluate.py
    params:
      - evaluate.threshold
    plots:
      - eval/plots:
          cache: false

metrics:
  - eval/live/metrics.json

artifacts:
  textclf:
    path: models/textclf
    type: model
    meta:
      tether:
        smoke: false
"""

LIVE_TRAIN = SCRIPTS["train.py"].split("        threshold = params")[0] + '''\
        out = Path("models/textclf")
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
    '''

LIVE_EVALUATE = SCRIPTS["evaluate.py"].replace(
    '''        Path("eval").mkdir(exist_ok=True)
        Path("eval/metrics.json").write_text(json.dumps({"accuracy": round(correct / len(evals), 6)}) + "\\n")''',
    '''        # as dvclive's Live(dir="eval/live") leaves it: metrics in git, declared at the top level
        Path("eval/live").mkdir(parents=True, exist_ok=True)
        Path("eval/plots").mkdir(parents=True, exist_ok=True)
        Path("eval/live/metrics.json").write_text(json.dumps({"accuracy": round(correct / len(evals), 6),
                                                              "step": 0}) + "\\n")
        Path("eval/plots/scores.csv").write_text("label,correct\\n" + "".join(
            f"{label},{1}\\n" for label, _ in evals))''')


def build_textclf_live(base: Path, s3: dict | None = None) -> Project:
    """The text classifier as the model-shape issue describes it: directory outputs, a pickle
    model, the decision threshold declared only as a param of the stage that evaluates the model,
    metrics written dvclive's way (a file in git named by the top-level `metrics:`), plots."""
    p = _init(base, s3)
    write_sources(p.root)
    (p.root / "dvc.yaml").write_text(LIVE_DVC_YAML)
    (p.root / "src/textclf/train.py").write_text(textwrap.dedent(LIVE_TRAIN))
    (p.root / "src/textclf/evaluate.py").write_text(textwrap.dedent(LIVE_EVALUATE))
    assert "eval/live" in (p.root / "src/textclf/evaluate.py").read_text()
    p.dvc("add", "-q", "data/raw")
    p.dvc("repro", "-q")
    p.commit_all("text classifier: dvclive metrics, threshold on evaluate")
    _publish(p)
    return p


def _init(base: Path, s3: dict | None) -> Project:
    p = Project(Path(base))
    p.root.mkdir(parents=True)
    p.git("init", "-q", "-b", "main")
    p.git("config", "user.name", "Tess Tether")
    p.git("config", "user.email", "tess@example.com")
    p.dvc("init", "-q")
    if s3 is None:
        p.store.mkdir(parents=True, exist_ok=True)
        p.dvc("remote", "add", "--local", "-f", "-d", "local", str(p.store))
    else:
        p.dvc("remote", "add", "-f", "-d", "s3", s3["url"])
        p.dvc("remote", "modify", "s3", "endpointurl", s3["endpoint"])
    return p


def _publish(p: Project) -> None:
    p.git("init", "-q", "--bare", str(p.origin))
    p.git("remote", "add", "origin", str(p.origin))
    p.git("push", "-q", "origin", "main")


# -- a model no stage produces: trained in a notebook, kept with `dvc add` or in git -----------
CHURN_EVALUATE = '''\
"""Score data/holdout.csv with a pickled logistic model; metrics for DVC, threshold from params."""
import csv
import json
import math
import pickle
import sys
from pathlib import Path

import yaml

model_path = Path(sys.argv[1])
params = yaml.safe_load(Path("params.yaml").read_text())
key = sys.argv[2]
threshold = params[key]["threshold"]
model = pickle.loads(model_path.read_bytes())
rows = list(csv.reader(Path("data/holdout.csv").read_text().splitlines()))[1:]
correct = 0
for tenure, spend, label in rows:
    z = model["bias"] + model["w"][0] * float(tenure) + model["w"][1] * float(spend)
    correct += ((1 / (1 + math.exp(-z))) >= threshold) == (label == "1")
out = Path("eval") / key
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"accuracy": round(correct / len(rows), 6)}) + "\\n")
'''


def churn_model(version: int) -> bytes:
    import pickle

    return pickle.dumps({"bias": -1.0 + 0.1 * version, "w": [-0.05, 0.02 * version]}, protocol=4)


def churn_stage(key: str, model_path: str) -> str:
    return f"""\
  {key}:
    cmd: python src/churn/evaluate.py {model_path} {key}
    deps:
      - data/holdout.csv
      - {model_path}
      - src/churn/evaluate.py
    params:
      - {key}.threshold
    metrics:
      - eval/{key}/metrics.json:
          cache: false
"""


def build_churn(base: Path, keep: str = "dvc", *, evaluate: bool = True, second: bool = False) -> Project:
    """A churn model trained outside the pipeline and committed as a file: `keep="dvc"` adds it
    with `dvc add`, `keep="git"` commits it to git. With `evaluate`, one stage scores it (data,
    code, threshold param, metrics); without, the model is all there is. With `second`, another
    model (`churn-lite`, kept in git) lives in the same repository with its own evaluation."""
    p = _init(base, None)
    root = p.root
    (root / "src/churn").mkdir(parents=True)
    (root / "src/churn/evaluate.py").write_text(CHURN_EVALUATE)
    (root / "data").mkdir()
    rng = random.Random(5)
    lines = ["tenure,spend,label"] + [f"{rng.randint(1, 60)},{rng.randint(10, 200)},{rng.randint(0, 1)}"
                                      for _ in range(80)]
    (root / "data/holdout.csv").write_text("\n".join(lines) + "\n")
    (root / "models").mkdir()
    (root / "models/churn.pkl").write_bytes(churn_model(1))
    params = "evaluate:\n  threshold: 0.5\n"
    stages = churn_stage("evaluate", "models/churn.pkl") if evaluate else ""
    arts = "  churn:\n    path: models/churn.pkl\n    type: model\n    meta:\n      tether:\n        smoke: false\n"
    if second:
        (root / "models/churn-lite.pkl").write_bytes(churn_model(7))
        params += "lite:\n  threshold: 0.4\n"
        stages += churn_stage("lite", "models/churn-lite.pkl")
        arts += "  churn-lite:\n    path: models/churn-lite.pkl\n    type: model\n    meta:\n      tether:\n        smoke: false\n"
    (root / "params.yaml").write_text(params)
    (root / "dvc.yaml").write_text((f"stages:\n{stages}\n" if stages else "") + f"artifacts:\n{arts}")
    p.dvc("add", "-q", "data/holdout.csv")
    if keep == "dvc":
        p.dvc("add", "-q", "models/churn.pkl")
    if evaluate:
        p.dvc("repro", "-q")
    p.commit_all(f"churn model ({keep})")
    _publish(p)
    return p


def retrain_churn(p: Project, version: int, keep: str = "dvc", model: str = "churn") -> None:
    """A new model file from the notebook, recorded the way the project keeps it."""
    (p.root / f"models/{model}.pkl").write_bytes(churn_model(version) if model == "churn" else churn_model(version + 10))
    if keep == "dvc" and model == "churn":
        p.dvc("add", "-q", f"models/{model}.pkl")
    p.dvc("repro", "-q")
    p.commit_all(f"{model} v{version}")


# -- a raw-bytes model: one large weights file, a threshold and metrics; no bundle manifest --
BIG_MAKE_MODEL = '''
import json, os, random, yaml
p = yaml.safe_load(open("params.yaml"))
os.makedirs("models/big", exist_ok=True)
rng = random.Random(p["seed"])
with open("models/big/weights.bin", "wb") as f:
    for _ in range(p["size_mb"]):
        f.write(rng.randbytes(1 << 20))
json.dump({"value": p["threshold"], "source": "params"}, open("models/big/threshold.json", "w"))
json.dump({"auc": 0.9}, open("models/big/metrics.json", "w"))
'''
BIG_DVC_YAML = '''stages:
  make:
    cmd: python make_model.py
    deps: [make_model.py, data/input.csv]
    params: [seed, size_mb, threshold]
    outs: [models/big/weights.bin, models/big/threshold.json, models/big/metrics.json]
artifacts:
  big:
    path: models/big
    type: model
    meta:
      tether: {smoke: false, require_staging: false}
'''


def big_release(p: Project, seed: int, size_mb: int, threshold: float = 0.5) -> str:
    """`big` released (and pushed) with these params: a new seed is new weights, a new
    threshold alone is a patch release that shares them."""
    (p.root / "params.yaml").write_text(f"seed: {seed}\nsize_mb: {size_mb}\nthreshold: {threshold}\n")
    p.dvc("repro", "-q")
    p.commit_all(f"seed {seed}, threshold {threshold}")
    p.git("push", "-q", "origin", "main")
    return p.ok("release", "--push", "--json").json()["tag"]


def build_big(base: Path, size_mb: int) -> Project:
    """A model that is one file of `size_mb` MiB of random bytes (plus threshold and metrics),
    made by one DVC stage; v1.0.0 released and pushed."""
    p = _init(base, None)
    (p.root / "make_model.py").write_text(BIG_MAKE_MODEL)
    (p.root / "dvc.yaml").write_text(BIG_DVC_YAML)
    (p.root / "data").mkdir()
    (p.root / "data/input.csv").write_text("a,b\n1,2\n")
    p.git("init", "-q", "--bare", str(p.origin))
    p.git("remote", "add", "origin", str(p.origin))
    big_release(p, 1, size_mb)
    return p
