"""A throwaway copy of the reference project as a real git + DVC repository, with a bare git
origin and a local DVC remote beside it. Built (and reproduced) once per session; each test gets
its own copy."""

from __future__ import annotations

import json
import os
import tempfile
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["dvc.yaml", "dvc.lock", "params.yaml", "conf", "src/fraud_detector", ".dvc/config",
                 ".dvc/.gitignore", ".dvcignore", ".gitignore", "data/raw/.gitignore", "data/split/.gitignore",
                 "models/fraud-detector/.gitignore"]
BIN = str(Path(sys.executable).parent)

ISOLATION = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Tess Tether",
    "GIT_AUTHOR_EMAIL": "tess@example.com",
    "GIT_COMMITTER_NAME": "Tess Tether",
    "GIT_COMMITTER_EMAIL": "tess@example.com",
    "DVC_NO_ANALYTICS": "1",
    # one seal key (src/tether/adapters/sealed.py) for the session's every HOME: what a session
    # template kept under .git/tether verifies in the test that clones it, as for one user
    "TETHER_CACHE_DIR": os.path.join(tempfile.gettempdir(), f"tether-tests-{os.getpid()}"),
}


@contextmanager
def isolated_home(tmp_path_factory, name: str) -> Iterator[Path]:
    """For session and module fixtures (the per-test `isolated_env` does not reach them): HOME
    in a fresh directory with a minimal git config, and the fixed identity of ISOLATION."""
    import pytest

    home = tmp_path_factory.mktemp(f"{name}-home")
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        for k, v in ISOLATION.items():
            mp.setenv(k, v)
        yield home


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Project:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "project"
        self.origin = base / "origin.git"
        self.store = base / "dvcstore"

    # -- running things -------------------------------------------------------------------
    def env(self, extra: dict | None = None) -> dict:
        env = {**os.environ, **ISOLATION, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
        env.pop("PYTHONPATH", None)
        return {**env, **(extra or {})}

    def sh(self, *args: str, cwd: Path | None = None, check: bool = True, env: dict | None = None) -> Result:
        proc = subprocess.run(list(args), cwd=cwd or self.root, capture_output=True, text=True,
                              env=self.env(env), stdin=subprocess.DEVNULL)
        res = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return res

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return self.sh("git", *args, cwd=cwd).out.strip()

    def dvc(self, *args: str, check: bool = True) -> Result:
        return self.sh(os.path.join(BIN, "dvc"), *args, check=check)

    def tether(self, *args: str, cwd: Path | None = None, env: dict | None = None) -> Result:
        """The real CLI in a subprocess: exit codes, stdout and stderr as a user sees them."""
        return self.sh(sys.executable, "-m", "tether.cli", *args, cwd=cwd, check=False, env=env)

    def ok(self, *args: str, cwd: Path | None = None) -> Result:
        res = self.tether(*args, cwd=cwd)
        assert res.code == 0, f"tether {' '.join(args)} exited {res.code}:\n{res.out}\n{res.err}"
        return res

    # -- editing --------------------------------------------------------------------------
    def commit_all(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def code_only_change(self, note: str) -> str:
        """Touch the bundle stage's code without changing what it computes: a new release whose
        weights, data, params and metrics equal the old ones (a patch)."""
        path = self.root / "src/fraud_detector/bundle.py"
        path.write_text(path.read_text() + f"\n# {note}\n")
        self.dvc("repro", "-q")
        return self.commit_all(f"bundle: {note}")

    def release_code_change(self, note: str, *extra: str) -> str:
        self.code_only_change(note)
        res = self.ok("release", "--push", "--json", *extra)
        return res.json()["tag"]

    def tags(self) -> list[str]:
        return self.git("tag", "--list").split()

    def refs(self) -> str:
        return self.git("for-each-ref", "--format=%(refname) %(objectname)")

    def snapshot(self) -> dict:
        """Every file of the workspace (except .git and the DVC cache) with its bytes, plus HEAD."""
        files = {}
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root).as_posix()
            if rel.startswith((".git/", ".dvc/cache", ".dvc/tmp")) or rel == ".git" or p.is_dir():
                continue
            files[rel] = p.read_bytes() if not p.is_symlink() else os.readlink(p).encode()
        head = self.git("rev-parse", "HEAD")
        branch = self.sh("git", "symbolic-ref", "-q", "--short", "HEAD", check=False).out.strip()
        return {"files": files, "head": head, "branch": branch}


def build_template(base: Path) -> Project:
    """Reproduce the reference pipeline once, commit it, release v1.0.0 and push everything."""
    p = Project(base)
    p.root.mkdir(parents=True)
    for rel in PROJECT_FILES:
        src, dst = REPO_ROOT / rel, p.root / rel
        if not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    p.git("init", "-q", "-b", "main")
    p.git("config", "user.name", "Tess Tether")
    p.git("config", "user.email", "tess@example.com")
    p.dvc("remote", "add", "--local", "-f", "-d", "local", str(p.store))
    p.dvc("repro", "-q")
    p.commit_all("reference pipeline")
    p.git("init", "-q", "--bare", str(p.origin))
    p.git("remote", "add", "origin", str(p.origin))
    p.git("push", "-q", "origin", "main")
    p.ok("release", "--push", "-m", "first release")
    warm_run_cache(p, WARM_THRESHOLDS)
    return p


# Thresholds many tests release (threshold_release): the template runs them once, so DVC's
# run-cache (.dvc/cache/runs, copied into every clone) restores their evaluate and bundle outputs
# instead of running the stages again. A test's `dvc repro` still checks every dependency and
# runs any stage whose inputs differ; only the outputs of an identical run are reused.
WARM_THRESHOLDS = (0.35,)


def warm_run_cache(p: Project, values: tuple[float, ...]) -> None:
    """Reproduce the pipeline at each threshold, then return to the committed state (itself
    restored from the run-cache), leaving the workspace exactly as released."""
    import re

    conf = p.root / "conf/evaluate/fixed.yaml"
    committed = conf.read_text()
    for value in values:
        conf.write_text(re.sub(r"threshold: [0-9.]+", f"threshold: {value}", committed))
        p.dvc("repro", "-q")
    conf.write_text(committed)
    p.dvc("repro", "-q")
    assert p.git("status", "--porcelain") == "", "warming the run-cache left the workspace changed"


def clone_template(template: Project, base: Path) -> Project:
    """A private copy: project, bare origin and DVC remote, with paths re-pointed."""
    shutil.copytree(template.base, base, symlinks=True, dirs_exist_ok=True)
    p = Project(base)
    p.git("remote", "set-url", "origin", str(p.origin))
    # What `dvc remote modify --local local url STORE` writes, without a DVC start-up per test.
    local = p.root / ".dvc/config.local"
    text = local.read_text()
    old, new = f"    url = {template.store}\n", f"    url = {p.store}\n"
    assert text.count(old) == 1, text
    local.write_text(text.replace(old, new))
    return p


def threshold_release(p: Project, value: float) -> str:
    """A release with new bundle objects (threshold, metrics), same weights: quick to make."""
    conf = p.root / "conf/evaluate/fixed.yaml"
    import re

    conf.write_text(re.sub(r"threshold: [0-9.]+", f"threshold: {value}", conf.read_text()))
    p.dvc("repro", "-q")
    p.commit_all(f"threshold {value}")
    return p.ok("release", "--push", "--json").json()["tag"]


def promote_to(p: Project, tag: str, env: str = "production") -> None:
    p.ok("promote", tag, "--env", env, "--approver", "ci", "--reason", "test", "--skip-staging", "test",
         "--allow-regression", "test")


def cache_object(p: Project, md5: str) -> Path:
    return p.root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]


def corrupt(path: Path) -> None:
    """Flip bytes in place and keep the file read-only, as a silent disk or cache fault would."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def clone_of(p: Project, tmp_path, name: str = "clone") -> Project:
    """A fresh clone of the bare origin with the same DVC remote: only origin's branches."""
    c = Project(tmp_path / name)
    c.root = tmp_path / name / "project"
    c.origin, c.store = p.origin, p.store
    c.root.parent.mkdir(parents=True, exist_ok=True)
    p.sh("git", "clone", "-q", str(p.origin), str(c.root), cwd=tmp_path)
    c.dvc("remote", "add", "--local", "-f", "-d", "local", str(p.store))
    return c
