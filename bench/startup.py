"""Start-up on a small repository: `tether --version`, `--help` and the four reads, against
`python -c pass` and against the floor typer itself sets (a bare typer app with two commands,
which imports typer and builds its command tree: tether's CLI is typer, as the brief chose);
and a check that read paths never import dvc.

TETHER_STARTUP_BASELINE=<bin dir of another tether install> (say a worktree of an older commit
with its own `make .venv/.installed`) adds that install's figures, measured in the same run on a
copy of the same repository, and each figure's ratio against it: how a refactor moved start-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, ENV, Table, wall  # noqa: E402
from synthetic import build_registry_repo  # noqa: E402


def imported_modules(args: list[str], cwd: Path, python: str = sys.executable) -> set[str]:
    proc = subprocess.run([python, "-X", "importtime", "-m", "tether.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True)
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


TYPER_FLOOR = """import typer
app = typer.Typer()
@app.command()
def a() -> None: pass
@app.command()
def b() -> None: pass
app()
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-bench-startup-") as tmp:
        repo = build_registry_repo(Path(tmp) / "repo", releases=10, promotions=4)
        floor = Path(tmp) / "typer_floor.py"
        floor.write_text(TYPER_FLOOR)
        for args in (["list"], ["status"], ["history"], ["show", "production"]):  # warm the kept views
            subprocess.run([str(BIN / "tether"), *args], cwd=repo, env=ENV, capture_output=True, check=True)
        base = wall([sys.executable, "-c", "pass"], repo, repeat=7)
        typer_floor = wall([sys.executable, str(floor), "a"], repo, repeat=7)
        t = Table("Start-up: small repository (median wall seconds; issue target 0.1 s)")
        t.add("python -c pass", base, "s")
        t.add("bare typer app, 2 commands", typer_floor, "s", "python -c pass", base)
        for args in (["--version"], ["--help"], ["list"], ["status"], ["history"], ["show", "production"]):
            v = wall([str(BIN / "tether"), *args], repo, repeat=7)
            t.add("tether " + " ".join(args), v, "s", "bare typer app", typer_floor, "<= 0.1 s", v <= 0.1)
        t.print()
        for args in (["list"], ["show", "production"], ["history"], ["status"]):
            mods = imported_modules(args, repo)
            heavy = sorted(m for m in mods if m.split(".")[0] in ("typer", "dvc", "sklearn", "pandas", "hydra", "skops", "fastapi"))
            print(f"  tether {' '.join(args):18} imports typer/dvc/sklearn/pandas/hydra: {', '.join(heavy[:4]) or 'none'}")
        if os.environ.get("TETHER_STARTUP_BASELINE"):
            against_baseline(repo, Path(os.environ["TETHER_STARTUP_BASELINE"]))


def against_baseline(repo: Path, base_bin: Path) -> None:
    """This install against another, alternating, each on its own copy of the repository (the
    two may keep their views in different formats)."""
    other = repo.parent / "repo-baseline"
    shutil.copytree(repo, other, symlinks=True)
    for args in (["list"], ["status"], ["history"], ["show", "production"]):
        subprocess.run([str(base_bin / "tether"), *args], cwd=other, env=ENV, capture_output=True, check=True)
    t = Table(f"Start-up: this tree against the baseline install {base_bin} (median wall seconds)")
    for args in (["--version"], ["--help"], ["list"], ["status"], ["history"], ["show", "production"]):
        now, before = [], []
        for _ in range(3):  # alternate, so drift on a shared machine hits both alike
            now.append(wall([str(BIN / "tether"), *args], repo, repeat=3))
            before.append(wall([str(base_bin / "tether"), *args], other, repeat=3))
        b = sorted(before)[1]
        v = sorted(now)[1]
        t.add("tether " + " ".join(args), v, "s", "baseline", b, "<= 1.1x baseline", v <= 1.1 * b)
    t.print()
    for args in (["list"], ["status"]):
        mine = len(imported_modules(args, repo))
        theirs = len(imported_modules(args, other, str(base_bin / "python")))
        print(f"  tether {' '.join(args):18} modules imported: {mine} (baseline {theirs})")


if __name__ == "__main__":
    main()
