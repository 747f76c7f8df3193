"""Timing helpers: wall-clock medians of whole commands, and a table printed as ratios against
a baseline measured in the same run (the machines are shared and noisy)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
OUT = Path(__file__).resolve().parent / "out"
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "GIT_CONFIG_NOSYSTEM": "1",
       "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
       "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}


def wall(args: list[str], cwd: Path, repeat: int = 5, check: bool = True, setup=None) -> float:
    """Median wall seconds of a whole command (process start included, as a user waits).
    `setup()`, if given, runs before each repeat, outside the timing (e.g. drop a cache)."""
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t = time.perf_counter()
        proc = subprocess.run(args, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - t)
        if check and proc.returncode != 0:
            raise SystemExit(f"bench: {' '.join(args)} failed: {proc.stderr[-500:]}")
    return statistics.median(times)


class Table:
    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[dict] = []

    def add(self, figure: str, value: float, unit: str, baseline_name: str | None = None,
            baseline: float | None = None, target: str = "", ok: bool | None = None) -> None:
        ratio = (baseline / value if value else float("inf")) if baseline else None
        self.rows.append({"figure": figure, "value": value, "unit": unit, "baseline": baseline_name,
                          "baseline_value": baseline, "ratio": ratio, "target": target, "ok": ok})

    def print(self) -> None:
        print(f"\n{self.title}")
        print(f"  {'figure':44} {'value':>10} {'baseline':>30} {'ratio':>8}  target")
        for r in self.rows:
            base = f"{r['baseline']} {r['baseline_value']:.3f}" if r["baseline"] else ""
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
            verdict = "" if r["ok"] is None else ("  ok" if r["ok"] else "  MISSED")
            print(f"  {r['figure']:44} {r['value']:>8.3f}{r['unit']:>2} {base:>30} {ratio:>8}  {r['target']}{verdict}",
                  flush=True)
        OUT.mkdir(exist_ok=True)
        (OUT / (self.title.split(":")[0].lower().replace(" ", "-") + ".json")).write_text(json.dumps(self.rows, indent=1))
