"""Patch deploys cost what changed (issue 13, target 2): a threshold-only release of a large
model (TETHER_BENCH_PATCH_MB, default 1024 MiB) deployed onto a host that already runs the
release it patches (its weights are hard-linked from that release directory), against a cold
deploy of the same release into an empty target (every byte copied from the local DVC cache and
verified), measured in the same run."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bigmodel import BIN, build, promote, release, timed  # noqa: E402
from common import Table  # noqa: E402


def deploy(repo: Path, target: Path) -> float:
    return timed(BIN / "tether", "deploy", "--env", "production", "--target", target, cwd=repo)


def rmtree(path: Path) -> None:
    for dirpath, _dirs, _files in os.walk(path):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(path)


def main() -> None:
    size = int(os.environ.get("TETHER_BENCH_PATCH_MB", "1024"))
    repeat = int(os.environ.get("TETHER_BENCH_REPEAT", "3"))
    table = Table(f"Patch deploy: a threshold-only release of a {size} MiB model (ratio = cold / patch)")
    with tempfile.TemporaryDirectory(prefix="tether-bench-patch-") as tmp:
        root = Path(tmp)
        repo = build(root, size)
        host = root / "host"
        promote(repo, "big@v1.0.0")
        deploy(repo, host)
        patch = release(repo, 1, size, 0.6, "1.0.1")  # same seed: the same weights, a new threshold
        promote(repo, patch)
        patched, cold = [], []
        for _ in range(repeat):
            rel = host / "releases" / patch
            if rel.exists():
                rmtree(rel)
            patched.append(deploy(repo, host))
            fresh = root / "fresh"
            if fresh.exists():
                rmtree(fresh)
            cold.append(deploy(repo, fresh))
        weights = "models/big/weights.bin"
        shared = os.path.samefile(host / "releases/big@v1.0.0" / weights, host / "releases" / patch / weights)
        t_patch, t_cold = statistics.median(patched), statistics.median(cold)
        table.add("patch deploy (weights linked)", t_patch, "s", "cold deploy", t_cold,
                  "<= 0.3 s and <= 5% of cold", t_patch <= 0.3 and t_patch <= 0.05 * t_cold)
        table.add("patch deploy as a share of cold", 100 * t_patch / t_cold, "%", target="<= 5%",
                  ok=t_patch <= 0.05 * t_cold)
        table.add("weights shared (same inode)", float(shared), "", target="1 = yes", ok=shared)
        table.add("python -c pass", timed(sys.executable, "-c", "pass", cwd=root), "s",
                  target="(process start floor)")
    table.print()


if __name__ == "__main__":
    main()
