"""Build registries at scale quickly: N release tags (made within a second or two) and M
promotions, through `git fast-import`, with realistic manifests and tether's own trailers."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

MODEL = "fraud-detector"
DVC_YAML = f"""stages:
  train:
    cmd: PYTHONPATH=src python -m fraud_detector.train
    deps: [data/split/train.parquet, src/fraud_detector/train.py]
    params: [model]
    outs: [models/{MODEL}/model.skops]
artifacts:
  {MODEL}:
    path: models/{MODEL}
    type: model
"""
ISOLATED = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def versions(n: int) -> list[str]:
    """n distinct versions that stress SemVer order: 1.9.0 < 1.10.0, pre-releases, big numbers."""
    out = []
    major = 1
    while len(out) < n:
        for minor in range(0, 12):
            for patch in range(0, 9):
                out.append(f"{major}.{minor}.{patch}")
                if patch == 0 and minor % 3 == 0:
                    out.append(f"{major}.{minor}.{patch}-rc.1")
                    out.append(f"{major}.{minor}.{patch}-rc.10")
                    out.append(f"{major}.{minor}.{patch}-rc.2")
        major += 1
    return out[:n]


def manifest(version: str, commit: str, i: int) -> dict:
    rng = random.Random(i)
    h = lambda: "%032x" % rng.getrandbits(128)
    s = lambda: "%064x" % rng.getrandbits(256)
    return {
        "schema_version": 1, "model": MODEL, "version": version, "commit": commit, "tree": "0" * 40,
        "created_at": "2026-11-24T10:00:00.%06dZ" % i, "released_by": "Bench <bench@example.com>",
        "artifact": {"path": f"models/{MODEL}", "type": "model"},
        "components": {
            "weights": [{"path": f"models/{MODEL}/{n}", "md5": h(), "sha256": s(), "size": rng.randint(100, 10**7),
                         "stage": "train", "role": "model" if n == "model.skops" else n.split(".")[0]}
                        for n in ("model.skops", "threshold.json", "metrics.json", "feature_schema.json")],
            "data": [{"path": p, "md5": h(), "sha256": s(), "size": rng.randint(10**4, 10**8), "stage": "split"}
                     for p in ("data/raw/transactions.parquet", "data/split/train.parquet", "data/split/eval.parquet")],
            "code": [{"path": f"src/fraud_detector/{m}.py", "type": "blob", "git_id": "%040x" % rng.getrandbits(160)}
                     for m in ("data", "snapshot", "split", "preprocess", "train", "evaluate", "bundle")],
            "params": {"path": "params.yaml", "sha256": s(), "values": {"seed": 7, "model": {"n_estimators": 80 + i % 50}},
                       "used": {}, "config": {"dir": "conf", "tree": "%040x" % rng.getrandbits(160)}},
            "threshold": {"value": round(0.2 + (i % 30) / 100, 2), "source": "evaluate.threshold (fixed)",
                          "params": ["evaluate"]},
        },
        "metrics": {"roc_auc": round(0.8 + rng.random() / 10, 6), "f1": round(0.3 + rng.random() / 5, 6),
                    "precision": round(rng.random(), 6), "recall": round(rng.random(), 6), "threshold": 0.3},
        "feature_schema": {"features": [{"name": f"f{k}", "dtype": "float64", "min": 0.0, "max": 1.0} for k in range(10)]},
        "runtime": {"python": "3.11.7", "packages": {"scikit-learn": "1.9.1"}, "lock_sha256": s()},
    }


def _data(text: str) -> bytes:
    b = text.encode()
    return b"data %d\n" % len(b) + b + b"\n"


def _run_fast_import(repo: Path, stream: bytes) -> None:
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=stream, check=True,
                   env={**os.environ, **ISOLATED})


def build_registry_repo(path: Path, releases: int = 1000, promotions: int = 300) -> Path:
    repo = Path(path)
    repo.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ISOLATED}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, env=env)
    when = "1764000000 +0000"  # every release in the same second
    vers = versions(releases)
    out = bytearray()
    out += b"blob\nmark :1\n" + _data(DVC_YAML)
    for i, v in enumerate(vers):
        mark = 10 + i
        out += f"commit refs/heads/main\nmark :{mark}\ncommitter Bench <bench@example.com> {when}\n".encode()
        out += _data(f"model v{v}")
        if i:
            out += f"from :{mark - 1}\n".encode()
        out += b"M 100644 :1 dvc.yaml\n"
        out += f"M 100644 inline models/{MODEL}/VERSION\n".encode() + _data(v)
        out += b"\n"
    _run_fast_import(repo, bytes(out))
    commits = subprocess.run(["git", "rev-list", "--reverse", "main"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.split()
    from tether.manifest import tag_message

    out = bytearray()
    for i, (v, c) in enumerate(zip(vers, commits)):
        out += f"tag {MODEL}@v{v}\nfrom {c}\ntagger Bench <bench@example.com> {when}\n".encode()
        out += _data(tag_message(manifest(v, c, i), f"Release {MODEL} v{v}"))
    _run_fast_import(repo, bytes(out))
    tag_objs = dict(line.split() for line in subprocess.run(
        ["git", "for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/tags"], cwd=repo,
        capture_output=True, text=True, check=True).stdout.splitlines())
    by_version = dict(zip(vers, commits))
    stable = [v for v in vers if "-" not in v]
    out = bytearray()
    live = {"staging": "none", "production": "none"}
    heads = {"staging": None, "production": None}
    for k in range(promotions):
        env_name = "staging" if k % 2 == 0 else "production"
        v = stable[(k // 2) % len(stable)]
        tag = f"{MODEL}@v{v}"
        mark = 100000 + k
        trailers = (f"Tether-Action: promote\nTether-Release: {tag}\nTether-Tag-Object: {tag_objs[tag]}\n"
                    f"Tether-Previous: {live[env_name]}\nTether-Approver: bench\nTether-Reason: round {k}\n"
                    f"Tether-Time: 2026-11-24T11:00:{k // 1000000:02d}.{k % 1000000:06d}Z\n")
        out += f"commit refs/heads/{env_name}\nmark :{mark}\ncommitter Bench <bench@example.com> {when}\n".encode()
        out += _data(f"promote {env_name} to {tag}\n\nround {k}\n\n{trailers}")
        if heads[env_name]:
            out += f"from :{heads[env_name]}\n".encode()
        else:
            out += f"from {by_version[v]}\n".encode()
        out += f"merge {by_version[v]}\n".encode() if heads[env_name] else b""
        out += b"deleteall\nM 100644 :1 dvc.yaml\n"
        out += f"M 100644 inline models/{MODEL}/VERSION\n".encode() + _data(v)
        out += b"\n"
        heads[env_name] = mark
        live[env_name] = tag
    out = b"blob\nmark :1\n" + _data(DVC_YAML) + bytes(out)
    _run_fast_import(repo, bytes(out))
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=repo, check=True, env=env)
    return repo


if __name__ == "__main__":
    import sys
    import time

    t = time.perf_counter()
    build_registry_repo(Path(sys.argv[1]))
    print(f"built in {time.perf_counter() - t:.1f} s")
