"""Registry at scale: 1,000 releases and 300 promotions. tether list / show production / history
against gto show / gto history on the same repository, and raw `git for-each-ref` (the floor)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, Table, wall  # noqa: E402
from synthetic import build_registry_repo  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-bench-registry-") as tmp:
        repo = build_registry_repo(Path(tmp) / "repo", releases=1000, promotions=300)
        tether = [str(BIN / "tether")]
        gto = [str(BIN / "gto")]
        floor = wall(["git", "for-each-ref", "--format=%(refname) %(objectname) %(contents)", "refs/tags"], repo)
        t_list = wall(tether + ["list"], repo)
        t_show = wall(tether + ["show", "production"], repo)
        t_hist = wall(tether + ["history"], repo)
        g_show = wall(gto + ["show", "fraud-detector"], repo, repeat=3)
        g_hist = wall(gto + ["history", "fraud-detector"], repo, repeat=3)
        t = Table("Registry: 1,000 releases, 300 promotions (median wall seconds)")
        t.add("tether list", t_list, "s", "gto show", g_show, ">= 30x gto, < 0.3 s", g_show / t_list >= 30 and t_list < 0.3)
        t.add("tether show production", t_show, "s", "gto show", g_show, ">= 30x gto, < 0.3 s", g_show / t_show >= 30 and t_show < 0.3)
        t.add("tether history", t_hist, "s", "gto history", g_hist, ">= 30x gto, < 0.3 s", g_hist / t_hist >= 30 and t_hist < 0.3)
        t.add("tether list vs the floor", t_list, "s", "git for-each-ref", floor, "(floor: how close)")
        t.print()


if __name__ == "__main__":
    main()
