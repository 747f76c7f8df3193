"""Rollback latency with 50 MB, 500 MB and 2 GiB bundles (TETHER_BENCH_SIZES, default
50,500,2048: the issue's 500 MB and 2 GB): the time from the command until `current` names the old release, when the old
release is (a) still materialised, (b) only in the local DVC cache, (c) only on the DVC remote;
(b) and (c) against naive in-place `git checkout <tag> && dvc pull` on the same data, each side
run TETHER_BENCH_REPEAT times (default 5), alternating which goes first, and compared by
medians (single runs on this VM's disk spread by 2x: one run decides nothing). In (c)
deploy streams each object from the remote into the staging directory while hashing it (each
byte written once) and hard-links it into the cache; naive `dvc pull` writes the cache and links
or copies into the workspace, and fsyncs nothing."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, ENV, Table  # noqa: E402

MAKE_MODEL = '''
import hashlib, json, os, random, yaml
p = yaml.safe_load(open("params.yaml"))
os.makedirs("models/big", exist_ok=True)
rng = random.Random(p["seed"])
with open("models/big/weights.bin", "wb") as f:
    for _ in range(p["size_mb"]):
        f.write(rng.randbytes(1 << 20))
json.dump({"value": 0.5, "source": "fixed"}, open("models/big/threshold.json", "w"))
json.dump({"auc": 0.9, "predictions_sha256": "0"}, open("models/big/metrics.json", "w"))
files = {n: {"sha256": hashlib.sha256(open("models/big/" + n, "rb").read()).hexdigest(),
             "size": os.path.getsize("models/big/" + n)} for n in ("weights.bin", "threshold.json", "metrics.json")}
json.dump({"schema_version": 1, "model": "big", "files": files}, open("models/big/manifest.json", "w"))
'''
DVC_YAML = '''stages:
  make:
    cmd: python make_model.py
    deps: [make_model.py, data/input.csv]
    params: [seed, size_mb]
    outs: [models/big/weights.bin, models/big/threshold.json, models/big/metrics.json, models/big/manifest.json]
artifacts:
  big:
    path: models/big
    type: model
    meta:
      tether: {smoke: false, require_staging: false}
'''


def sh(*args, cwd):
    proc = subprocess.run(list(args), cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def timed(*args, cwd) -> float:
    t = time.perf_counter()
    sh(*args, cwd=cwd)
    return time.perf_counter() - t


def build(root: Path, size_mb: int) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    (repo / "make_model.py").write_text(MAKE_MODEL)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "data").mkdir()
    (repo / "data/input.csv").write_text("a,b\n1,2\n")
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh(str(BIN / "dvc"), "init", "-q", cwd=repo)
    sh(str(BIN / "dvc"), "remote", "add", "-d", "store", str(root / "store"), cwd=repo)
    for seed in (1, 2):
        (repo / "params.yaml").write_text(f"seed: {seed}\nsize_mb: {size_mb}\n")
        sh(str(BIN / "dvc"), "repro", "-q", cwd=repo)
        sh("git", "add", "-A", cwd=repo)
        sh("git", "commit", "-q", "-m", f"seed {seed}", cwd=repo)
        sh(str(BIN / "dvc"), "push", "-q", cwd=repo)
        sh(str(BIN / "tether"), "release", "--version", f"{seed}.0.0", cwd=repo)
        sh(str(BIN / "tether"), "promote", f"big@v{seed}.0.0", "--env", "production", "--approver", "b", "--reason", "b",
           cwd=repo)
    return repo


def rollback_env(repo: Path, to: str) -> None:
    sh(str(BIN / "tether"), "rollback", "--env", "production", "--release", to, "--approver", "b", "--reason", "b", cwd=repo)


def deploy(repo: Path, target: Path) -> float:
    return timed(str(BIN / "tether"), "deploy", "--env", "production", "--target", str(target), cwd=repo)


def naive(repo: Path, tag: str) -> float:
    t = time.perf_counter()
    sh("git", "checkout", "-q", tag, cwd=repo)
    # --force: without the old outputs in the cache, plain `dvc pull` refuses to overwrite them
    sh(str(BIN / "dvc"), "pull", "-q", "--force", cwd=repo)
    return time.perf_counter() - t


def run(size_mb: int, table: Table) -> None:
    with tempfile.TemporaryDirectory(prefix=f"tether-bench-rollback-{size_mb}-") as tmp:
        root = Path(tmp)
        repo = build(root, size_mb)
        target = root / "serving"
        cache = repo / ".dvc/cache"

        # (a) materialised: v1 then v2 deployed; roll back to v1 = stamp check + one symlink swap
        rollback_env(repo, "big@v1.0.0")
        deploy(repo, target)
        rollback_env(repo, "big@v2.0.0")
        deploy(repo, target)
        rollback_env(repo, "big@v1.0.0")
        t_switch = deploy(repo, target)
        assert os.readlink(target / "current") == "releases/big@v1.0.0"
        from tether.servedir.layout import switch_current

        t0 = time.perf_counter()
        for _ in range(20):
            switch_current(target, "big@v1.0.0")
        t_symlink = (time.perf_counter() - t0) / 20
        table.add(f"{size_mb} MB materialised: tether deploy", t_switch, "s", target="(whole command)")
        table.add(f"{size_mb} MB materialised: the switch itself", t_symlink * 1000, "ms", target="< 50 ms",
                  ok=t_symlink < 0.05)

        # (b) and (c): each side run `repeat` times, alternating which goes first; medians
        repeat = int(os.environ.get("TETHER_BENCH_REPEAT", "5"))

        def tether_side(remote: bool) -> float:
            sh("git", "checkout", "-q", "main", cwd=repo)
            rollback_env(repo, "big@v2.0.0")
            deploy(repo, target)  # v2 is materialised: the switch alone
            rollback_env(repo, "big@v1.0.0")
            shutil.rmtree(target / "releases/big@v1.0.0")
            if remote:
                shutil.rmtree(cache, ignore_errors=True)
                warm(root / "store")
            return deploy(repo, target)

        def naive_side(remote: bool) -> float:
            sh("git", "checkout", "-q", "big@v2.0.0", cwd=repo)
            sh(str(BIN / "dvc"), "pull" if remote else "checkout", "-q", "--force", cwd=repo)
            if remote:
                shutil.rmtree(cache)
                warm(root / "store")
            return naive(repo, "big@v1.0.0")

        for remote, where, bound in ((False, "in local cache", 1.25), (True, "only on remote", 1.1)):
            ours, theirs = [], []
            for i in range(repeat):
                sides = [(tether_side, ours), (naive_side, theirs)]
                for side, times in sides if i % 2 == 0 else sides[::-1]:
                    times.append(side(remote))
            t, n = statistics.median(ours), statistics.median(theirs)
            spread = f"{min(ours):.2f}-{max(ours):.2f} s vs {min(theirs):.2f}-{max(theirs):.2f} s"
            table.add(f"{size_mb} MB {where}: tether deploy (median of {repeat})", t, "s",
                      "git checkout && dvc pull", n, f"<= {bound}x naive; runs {spread}", t <= bound * n)
            table.rows[-1]["ratio"] = t / n
        sh("git", "checkout", "-q", "main", cwd=repo)
        table.add(f"{size_mb} MB: fsync of as many bytes just written", fsync_cost(root, size_mb), "s",
                  target="(what durability before the switch costs; naive pays none)")


def warm(store: Path) -> None:
    """Every object of the remote read once, so each side of (c) starts with the remote in the
    page cache. Without it the order decided the ratio: naive ran second and read what tether's
    deploy had just pulled into memory, while tether read from disk."""
    for path in sorted(store.rglob("*")):
        if path.is_file():
            with open(path, "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass


def fsync_cost(root: Path, size_mb: int) -> float:
    """Seconds that fsync takes on a file of `size_mb` MiB just written (its pages still dirty)."""
    block = os.urandom(1 << 20)
    path = root / "fsync-probe"
    with open(path, "wb") as f:
        for _ in range(size_mb):
            f.write(block)
        f.flush()
        t = time.perf_counter()
        os.fsync(f.fileno())
        took = time.perf_counter() - t
    path.unlink()
    return took


def main() -> None:
    sizes = [int(s) for s in os.environ.get("TETHER_BENCH_SIZES", "50,500,2048").split(",")]
    table = Table("Rollback: time until current names the old release (ratio = tether / naive)")
    for size in sizes:
        run(size, table)
    table.print()


if __name__ == "__main__":
    main()
