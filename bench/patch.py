"""Patch deploys cost what changed (issue 13, target 2): a threshold-only release of a large
model (TETHER_BENCH_PATCH_MB, default 1024 MiB) deployed onto a host that already runs the
release it patches (its weights are hard-linked from that release directory), against a cold
deploy of the same release into an empty target (every byte copied from the local DVC cache and
verified), measured in the same run. Every figure is the median of TETHER_BENCH_REPEAT (3) runs;
an in-process deploy() runs in a fresh process each time (its first call, lazy imports included,
as the CLI makes it)."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bigmodel import BIN, build, promote, release, sh, timed  # noqa: E402
from common import Table  # noqa: E402


CPU: list[float] = []  # user + sys seconds of each deploy, its git children included


def deploy(repo: Path, target: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(BIN / "tether", "deploy", "--env", "production", "--target", target, cwd=repo)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall


IN_PROCESS = ("import sys, time\n"
              "from tether.deploy.command import deploy\n"
              "t = time.perf_counter()\n"
              "deploy(sys.argv[1], 'production')\n"
              "print(time.perf_counter() - t)\n")


def deploy_in_process(repo: Path, target: Path) -> float:
    """deploy() alone: the interpreter and the module's imports are paid before the clock starts
    (what deploy() imports lazily is on it, as for the CLI)."""
    return float(sh(sys.executable, "-c", IN_PROCESS, target, cwd=repo).split()[-1])


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
        patched, cold, cpu_patch, cpu_cold = [], [], [], []
        for _ in range(repeat):
            rel = host / "releases" / patch
            if rel.exists():
                rmtree(rel)
            patched.append(deploy(repo, host))
            cpu_patch.append(CPU[-1])
            fresh = root / "fresh"
            if fresh.exists():
                rmtree(fresh)
            cold.append(deploy(repo, fresh))
            cpu_cold.append(CPU[-1])
        patched_in, cold_in = [], []
        for _ in range(repeat):  # each deploy() in a fresh process: its first call, as the CLI makes it
            rel = host / "releases" / patch
            if rel.exists():
                rmtree(rel)
            patched_in.append(deploy_in_process(repo, host))
            rmtree(root / "fresh")
            cold_in.append(deploy_in_process(repo, root / "fresh"))
        t_patch_in, t_cold_in = statistics.median(patched_in), statistics.median(cold_in)
        weights = "models/big/weights.bin"
        shared = os.path.samefile(host / "releases/big@v1.0.0" / weights, host / "releases" / patch / weights)
        t_patch, t_cold = statistics.median(patched), statistics.median(cold)
        table.add("patch deploy (weights linked)", t_patch, "s", "cold deploy", t_cold,
                  "<= 0.3 s and <= 5% of cold", t_patch <= 0.3 and t_patch <= 0.05 * t_cold)
        table.add("patch deploy as a share of cold", 100 * t_patch / t_cold, "%", target="<= 5%",
                  ok=t_patch <= 0.05 * t_cold)
        c_patch, c_cold = statistics.median(cpu_patch), statistics.median(cpu_cold)
        table.add("patch deploy, CPU seconds (user+sys)", c_patch, "s", "cold deploy", c_cold,
                  "(less sensitive to load)")
        table.add("patch deploy() in-process (no start-up)", t_patch_in, "s", "cold deploy()", t_cold_in,
                  "<= 0.3 s and <= 5% of cold", t_patch_in <= 0.3 and t_patch_in <= 0.05 * t_cold_in)
        table.add("weights shared (same inode)", float(shared), "", target="1 = yes", ok=shared)
        table.add("python -c pass", timed(sys.executable, "-c", "pass", cwd=root), "s",
                  target="(process start floor)")
    table.print()


if __name__ == "__main__":
    main()
