"""Peak memory of the commands that move a large model (issue 13, target 4): `tether deploy`
(from the local cache, and streamed from the remote), `tether verify --target`, `tether verify
REF` and `tether checkout` of a TETHER_BENCH_MEM_MB model (default 2048 MiB, the issue's 2 GB;
TETHER_BENCH_MEM_MB=512 for a quicker run). Every file is streamed in 1 MiB blocks, so the peak should not grow
with the model. Baselines from the same run: `python -c pass`, and naive `git checkout && dvc
pull` of the same data."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bigmodel import BIN, build, peak_rss_mb, promote, release, sh  # noqa: E402
from common import Table  # noqa: E402


def main() -> None:
    size = int(os.environ.get("TETHER_BENCH_MEM_MB", "2048"))
    table = Table(f"Memory: peak RSS with a {size} MiB model (ratio = baseline / tether)")
    with tempfile.TemporaryDirectory(prefix="tether-bench-memory-") as tmp:
        root = Path(tmp)
        repo = build(root, size)
        release(repo, 2, size, 0.5, "2.0.0")
        promote(repo, "big@v1.0.0")
        tether = str(BIN / "tether")
        floor = peak_rss_mb([sys.executable, "-c", "pass"], root)
        rows = [
            ("deploy, from the local cache", [tether, "deploy", "--env", "production", "--target", str(root / "a")]),
            ("verify --target", [tether, "verify", "--target", str(root / "a")]),
            ("verify big@v1.0.0 (materialises)", [tether, "verify", "big@v1.0.0"]),
            ("checkout big@v1.0.0", [tether, "checkout", "big@v1.0.0"]),
        ]
        found = [(name, peak_rss_mb(args, repo)) for name, args in rows]
        shutil.rmtree(repo / ".dvc/cache")
        found.append(("deploy, streamed from the remote",
                      peak_rss_mb([tether, "deploy", "--env", "production", "--target", str(root / "b")], repo)))
        sh("git", "checkout", "-q", "-f", "big@v2.0.0", cwd=repo)
        shutil.rmtree(repo / ".dvc/cache")
        naive = peak_rss_mb([str(BIN / "dvc"), "pull", "-q", "--force"], repo)
        for name, rss in found:
            table.add(name, rss, "MB", "dvc pull", naive, "<= 200 MB", rss <= 200)
        table.add("python -c pass", floor, "MB", target="(interpreter floor)")
    table.print()


if __name__ == "__main__":
    main()
