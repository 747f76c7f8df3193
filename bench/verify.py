"""Verification throughput: tether's SHA-256 of a 512 MiB file against a single-core hashlib
floor over the same bytes (both from the page cache)."""

from __future__ import annotations

import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Table  # noqa: E402

from tether.digest import sha256_file  # noqa: E402

SIZE = 512 << 20


def floor(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def timed(fn, path, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-bench-verify-") as tmp:
        path = Path(tmp) / "blob"
        with open(path, "wb") as f:
            for _ in range(SIZE >> 24):
                f.write(os.urandom(1 << 24))
        assert sha256_file(path) == floor(path)
        t_floor = timed(floor, path)
        t_ours = timed(sha256_file, path)
        mb = SIZE / (1 << 20)
        t = Table("Verification: SHA-256 throughput over 512 MiB")
        t.add("tether sha256_file (MiB/s)", mb / t_ours, "", "hashlib 1 MiB reads", mb / t_floor,
              ">= 80% of the floor", t_ours <= t_floor / 0.8)
        t.rows[-1]["ratio"] = t_floor / t_ours  # higher is better: ours as a fraction of the floor's speed
        t.print()


if __name__ == "__main__":
    main()
