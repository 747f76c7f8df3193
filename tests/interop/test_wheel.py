"""What a user installs (issue 30, item 2): the wheel holds tether alone (never the reference
project's `fraud_detector`), installs into a fresh environment with its dependencies resolved
from the package index (no lock), releases a small repository's model there, and a command
that needs an extra the user did not install says which one (exit 2), never an ImportError.

And every `tether[...]` extra the repository names (docs, CI templates, the Containerfile,
messages in the code) is one pyproject.toml declares."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from project import ISOLATION, REPO_ROOT

# the uv cache of the user running the suite: read before the per-test fixture moves HOME
UV_CACHE = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
UV = str(Path(sys.executable).parent / "uv")

TRAIN = '''\
"""A model in a few lines of the standard library: the positive rate of each feature."""
import csv
import json
from pathlib import Path

rows = list(csv.DictReader(Path("data/train.csv").read_text().splitlines()))
weights = {k: sum(float(r[k]) for r in rows) / len(rows) for k in ("a", "b")}
Path("models").mkdir(exist_ok=True)
Path("models/model.json").write_text(json.dumps(weights, sort_keys=True) + "\\n")
Path("metrics.json").write_text(json.dumps({"rows": len(rows)}) + "\\n")
'''

SERVE = '''\
import json


class Model:
    def __init__(self, path):
        self.weights = json.loads(path.read_text())

    def predict(self, records):
        score = [sum(self.weights[k] * r[k] for k in self.weights) for r in records]
        return [{"score": s, "decision": s >= 0.5} for s in score]
'''

PACK = '''\
"""A bundle in the verifying loader's shape (manifest.json, model.skops, threshold.json): the
model file is only bytes here, which the loader never reaches without scikit-learn and skops."""
import hashlib
import json
from pathlib import Path

out = Path("models/bundle")
out.mkdir(parents=True, exist_ok=True)
(out / "model.skops").write_bytes(hashlib.sha256(Path("data/train.csv").read_bytes()).digest())
(out / "threshold.json").write_text(json.dumps({"value": 0.5, "source": "params.yaml"}) + "\\n")
files = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size}
         for p in sorted(out.iterdir()) if p.name != "manifest.json"}
(out / "manifest.json").write_text(json.dumps({"schema_version": 1, "model": "bundle", "files": files}) + "\\n")
Path("bundle-metrics.json").write_text(json.dumps({"files": len(files)}) + "\\n")
'''

DVC_YAML = """\
stages:
  train:
    cmd: python src/train.py
    deps:
      - data/train.csv
      - src/train.py
    params:
      - train.threshold
    outs:
      - models/model.json
    metrics:
      - metrics.json:
          cache: false
  pack:
    cmd: python src/pack.py
    deps:
      - data/train.csv
      - src/pack.py
    params:
      - train.threshold
    outs:
      - models/bundle
    metrics:
      - bundle-metrics.json:
          cache: false
artifacts:
  tiny:
    path: models/model.json
    type: model
    meta:
      tether:
        threshold: params.yaml:train.threshold
        eval_data: data/train.csv
        serve:
          entrypoint: src/serve.py:Model
  bundle:
    path: models/bundle
    type: model
    meta:
      tether:
        smoke: false
        eval_data: data/train.csv
"""


def declared_extras() -> set[str]:
    doc = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return set(doc["project"]["optional-dependencies"])


def test_every_extra_the_repository_names_is_declared():
    extras = declared_extras()
    assert {"s3", "serve", "sklearn", "onnx", "mlflow", "all", "example"} <= extras
    files = [REPO_ROOT / "README.md", REPO_ROOT / "Containerfile", REPO_ROOT / "Makefile", *REPO_ROOT.glob("docs/*.md"),
             *REPO_ROOT.glob("examples/**/*"), *REPO_ROOT.glob("src/tether/**/*.py")]
    named: dict[str, set[str]] = {}
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        for group in re.findall(r"(?:\btether|['\"]\.)\[([a-z0-9_, -]+)\]", text):
            for extra in group.split(","):
                named.setdefault(extra.strip(), set()).add(str(f.relative_to(REPO_ROOT)))
    assert named, "no extra named anywhere: the pattern is wrong"
    unknown = {e: sorted(where) for e, where in named.items() if e not in extras}
    assert not unknown, unknown
    # the CI templates install the S3 extra (their remote is on S3); `all` is every runtime extra
    for name in ("github-actions.yml", "gitlab-ci.yml"):
        assert "tether[s3]" in (REPO_ROOT / "examples/ci" / name).read_text()
    doc = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    (all_,) = doc["project"]["optional-dependencies"]["all"]
    assert set(all_[len("tether["):-1].split(",")) == extras - {"all", "example", "test", "bench"}


def run(args: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def build_wheel(tmp_path: Path, env: dict) -> Path:
    """Built from a copy of what the sdist would hold, so the repository's tree stays untouched
    (setuptools writes build/ and egg-info beside its sources); src/fraud_detector is copied too:
    the package configuration, not its absence, must keep it out."""
    src = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, src / name)
    for pkg in ("tether", "fraud_detector"):
        shutil.copytree(REPO_ROOT / "src" / pkg, src / "src" / pkg, ignore=ignore)
    run([UV, "build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), str(src)], tmp_path, env)
    (wheel,) = (tmp_path / "dist").glob("tether-*.whl")
    return wheel


def check_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"tether", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert not [n for n in names if "fraud_detector" in n]
    assert "tether/py.typed" in names and "tether/cli/__init__.py" in names and "tether/extras.py" in names
    assert all(n.endswith((".py", "py.typed")) for n in names if n.startswith("tether/")), names
    core = [line.split(":", 1)[1].strip() for line in meta.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]
    core_names = {re.split(r"[<>=!~\[ ;]", r)[0].lower() for r in core}
    assert core_names == {"dvc", "hydra-core", "typer", "pydantic", "semver", "pyyaml", "cryptography"}, core
    provided = {line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Provides-Extra:")}
    assert {"s3", "serve", "sklearn", "onnx", "mlflow", "all"} <= provided, provided


def small_repository(root: Path, venv_bin: Path, env: dict) -> None:
    """git + DVC: a train stage writing a file model (`tiny`), a pack stage writing a skops-shaped
    bundle (`bundle`), a bare git origin beside it."""
    root.mkdir()
    (root / "src").mkdir()
    (root / "data").mkdir()
    (root / "src/train.py").write_text(TRAIN)
    (root / "src/serve.py").write_text(SERVE)
    (root / "src/pack.py").write_text(PACK)
    (root / "data/train.csv").write_text("a,b,label\n" + "".join(f"{i % 3},{i % 2},{i % 2}\n" for i in range(20)))
    (root / "params.yaml").write_text("train:\n  threshold: 0.5\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    dvc = str(venv_bin / "dvc")
    run(["git", "init", "-q", "-b", "main"], root, env)
    run([dvc, "init", "-q"], root, env)
    run([dvc, "add", "-q", "data/train.csv"], root, env)
    run([dvc, "repro", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", "a tiny model"], root, env)
    run(["git", "init", "-q", "--bare", str(root.parent / "origin.git")], root, env)
    run(["git", "remote", "add", "origin", str(root.parent / "origin.git")], root, env)
    run(["git", "push", "-q", "origin", "main"], root, env)


@dataclass
class Installed:
    venv: Path
    wheel: Path
    env: dict  # the user's environment: the fresh venv's bin first on PATH
    seconds: float

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """The wheel built, checked and installed into a fresh venv (once per module)."""
    t0 = time.monotonic()
    tmp = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, **ISOLATION, "UV_CACHE_DIR": UV_CACHE, "HOME": str(tmp_path_factory.mktemp("home"))}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    wheel = build_wheel(tmp, env)
    check_contents(wheel)
    venv = tmp / "venv"
    run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], tmp, env)
    # no lock, no constraints: the dependencies resolve fresh from the package index
    run([UV, "pip", "install", "--quiet", "--python", str(venv / "bin/python"), str(wheel)], tmp, env)
    user = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
    return Installed(venv, wheel, user, time.monotonic() - t0)


def test_the_wheel_installs_alone_and_releases_a_model(installed, tmp_path):
    t0 = time.monotonic()
    user = {**installed.env, "HOME": os.environ["HOME"]}  # this test's isolated HOME (conftest)
    py, tether, dvc = installed.bin("python"), installed.bin("tether"), installed.bin("dvc")
    assert run([tether, "--version"], tmp_path, user).stdout.strip().endswith("0.1.0")
    gone = run([py, "-c", "import fraud_detector"], tmp_path, user, check=False)
    assert gone.returncode == 1 and "No module named 'fraud_detector'" in gone.stderr
    for mod in ("fastapi", "uvicorn", "sklearn", "skops", "pandas", "dvc_s3"):  # extras, not the core
        assert run([py, "-c", f"import {mod}"], tmp_path, user, check=False).returncode == 1, mod

    root = tmp_path / "repo"
    small_repository(root, installed.venv / "bin", user)
    # a remote on S3 without the s3 extra: exit 2, the extra named, nothing released
    run([dvc, "remote", "add", "--local", "-d", "s3", "s3://bucket/store"], root, user)
    res = run([tether, "release", "tiny", "--push"], root, user, check=False)
    assert res.returncode == 2 and "s3 extra" in res.stderr and "pip install 'tether[s3]'" in res.stderr, res
    assert "Traceback" not in res.stderr and run(["git", "tag"], root, user).stdout == ""

    (tmp_path / "store").mkdir()
    run([dvc, "remote", "add", "--local", "-f", "-d", "local", str(tmp_path / "store")], root, user)
    res = run([tether, "release", "tiny", "--push", "--json"], root, user)
    assert '"tag": "tiny@v1.0.0"' in res.stdout, res.stdout
    shown = run([tether, "show", "tiny@v1.0.0", "--json"], root, user).stdout
    assert '"models/model.json"' in shown and '"src/train.py"' in shown

    # promote's smoke gate runs the model in a worker: without the sklearn extra, exit 2, named
    res = run([tether, "promote", "tiny@v1.0.0", "--env", "staging", "--reason", "t", "--approver", "ops"],
              root, user, check=False)
    assert res.returncode == 2 and "sklearn extra" in res.stderr and "tether[sklearn]" in res.stderr, res
    assert "Traceback" not in res.stderr
    assert "staging" not in run(["git", "branch", "--list"], root, user).stdout

    res = run([tether, "serve", "--target", str(tmp_path / "serving")], root, user, check=False)
    assert res.returncode == 2, res
    assert "tether serve needs the serve extra" in res.stderr and "pip install 'tether[serve]'" in res.stderr
    assert "Traceback" not in res.stderr and "ImportError" not in res.stderr

    # a skops bundle deployed with --smoke: the skops loader names the sklearn extra, exit 2,
    # and the serving directory gets no release
    res = run([tether, "release", "bundle", "--push", "--json"], root, user)
    assert '"tag": "bundle@v1.0.0"' in res.stdout, res.stdout
    run([tether, "promote", "bundle@v1.0.0", "--env", "staging", "--reason", "t", "--approver", "ops"], root, user)
    target = tmp_path / "serving"
    res = run([tether, "deploy", "--env", "staging", "--model", "bundle", "--target", str(target), "--smoke"],
              root, user, check=False)
    assert res.returncode == 2, res
    assert "skops loader" in res.stderr and "sklearn extra" in res.stderr and "tether[sklearn]" in res.stderr, res
    assert "Traceback" not in res.stderr
    assert not (target / "current").exists()
    took = time.monotonic() - t0 + installed.seconds
    assert took < 120, took
