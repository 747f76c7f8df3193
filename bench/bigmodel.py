"""A raw-bytes model of a given size for the deploy benchmarks (patch.py, memory.py,
fleet.py): one DVC stage writes `weights.bin` (random bytes from a seed), `threshold.json` and
`metrics.json`; a new seed is new weights, a new threshold alone a patch release that shares
them. The DVC remote is a local directory, or S3 (moto's server) for the fleet."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, ENV  # noqa: E402

# the same raw-bytes model the tests build (tests/helpers/shapes.py): one definition of it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from shapes import BIG_DVC_YAML as DVC_YAML  # noqa: E402
from shapes import BIG_MAKE_MODEL as MAKE_MODEL  # noqa: E402


def sh(*args, cwd, env=None):
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env or ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def timed(*args, cwd, env=None) -> float:
    t = time.perf_counter()
    sh(*args, cwd=cwd, env=env)
    return time.perf_counter() - t


def tether(*args, cwd, env=None) -> str:
    return sh(BIN / "tether", *args, cwd=cwd, env=env)


def build(root: Path, size_mb: int, s3: dict | None = None, env=None) -> Path:
    """root/repo (git, DVC, a bare root/origin.git), big@v1.0.0 released and pushed."""
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "make_model.py").write_text(MAKE_MODEL)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "data/input.csv").write_text("a,b\n1,2\n")
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh(BIN / "dvc", "init", "-q", cwd=repo)
    if s3 is None:
        sh(BIN / "dvc", "remote", "add", "-d", "store", root / "store", cwd=repo)
    else:
        sh(BIN / "dvc", "remote", "add", "-d", "s3", s3["url"], cwd=repo)
        sh(BIN / "dvc", "remote", "modify", "s3", "endpointurl", s3["endpoint"], cwd=repo)
    sh("git", "init", "-q", "--bare", root / "origin.git", cwd=root)
    sh("git", "remote", "add", "origin", root / "origin.git", cwd=repo)
    release(repo, 1, size_mb, 0.5, "1.0.0", env=env)
    return repo


def release(repo: Path, seed: int, size_mb: int, threshold: float, version: str, env=None) -> str:
    (repo / "params.yaml").write_text(f"seed: {seed}\nsize_mb: {size_mb}\nthreshold: {threshold}\n")
    sh(BIN / "dvc", "repro", "-q", cwd=repo, env=env)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", f"seed {seed} threshold {threshold}", cwd=repo)
    sh("git", "push", "-q", "origin", "main", cwd=repo)
    tether("release", "--version", version, "--push", cwd=repo, env=env)
    return f"big@v{version}"


def promote(repo: Path, tag: str, push: bool = False, env=None) -> None:
    tether("promote", tag, "--to", "production", "--approver", "bench", "--reason", "bench",
           *(["--push"] if push else []), cwd=repo, env=env)


def peak_rss_mb(args: list, cwd: Path, env=None) -> float:
    """Peak resident memory (MiB) of a whole command, its own child processes included: the
    largest of them, as getrusage(RUSAGE_CHILDREN) reports it in a fresh parent process."""
    probe = ("import resource, subprocess, sys\n"
             "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
             "sys.stderr.write(r.stderr[-800:])\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.exit(r.returncode)\n")
    out = sh(sys.executable, "-c", probe, *args, cwd=cwd, env=env)
    return int(out.split()[-1]) / 1024
