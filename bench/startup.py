"""Start-up: `tether --help` and `tether list` on a small repository, against `python -c pass`;
and a check that read paths never import dvc."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, ENV, Table, wall  # noqa: E402
from synthetic import build_registry_repo  # noqa: E402


def imported_modules(args: list[str], cwd: Path) -> set[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tether.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True)
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-bench-startup-") as tmp:
        repo = build_registry_repo(Path(tmp) / "repo", releases=10, promotions=4)
        base = wall([sys.executable, "-c", "pass"], repo, repeat=7)
        t_help = wall([str(BIN / "tether"), "--help"], repo, repeat=7)
        t_list = wall([str(BIN / "tether"), "list"], repo, repeat=7)
        t = Table("Start-up: small repository (median wall seconds)")
        t.add("tether --help", t_help, "s", "python -c pass", base, "< 0.3 s", t_help < 0.3)
        t.add("tether list", t_list, "s", "python -c pass", base, "< 0.3 s", t_list < 0.3)
        t.print()
        for args in (["list"], ["show", "production"], ["history"], ["status"]):
            mods = imported_modules(args, repo)
            heavy = sorted(m for m in mods if m.split(".")[0] in ("dvc", "sklearn", "pandas", "hydra", "skops", "fastapi"))
            print(f"  tether {' '.join(args):18} imports dvc/sklearn/pandas/hydra: {', '.join(heavy[:4]) or 'none'}")


if __name__ == "__main__":
    main()
