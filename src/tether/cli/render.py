"""Text for the terminal: key metrics, gate lines, ref notes, and tables (rich on a terminal,
aligned plain text when piped). Pure: no printing here."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

# C0 and C1 control characters and DEL, except newline and tab: text from git (an approver, a
# reason, a tag message, an author) is printed escaped, so it cannot move the cursor, recolour
# the terminal or forge a line of tether's own output.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


_CONTROL_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _CONTROL) + "\n]")


def safe(text: str) -> str:
    return text.translate(_CONTROL)


def metrics_line(metrics: dict | None, keys=("roc_auc", "f1", "precision", "recall")) -> str:
    if not metrics:
        return "-"
    parts = [f"{k}={v:.3f}" for k in keys if isinstance(v := metrics.get(k), (int, float))]
    if parts:
        return " ".join(parts)
    # a project with its own metric names: the first few numeric ones
    from tether.gates import NOT_METRICS

    shown = [k for k in sorted(metrics) if k not in NOT_METRICS and isinstance(metrics[k], (int, float))
             and not isinstance(metrics[k], bool)][:4]
    return " ".join(f"{k}={metrics[k]:.3f}" for k in shown) or "-"


def gate_line(g) -> str:
    line = f"  gate {g.name}: {g.status} - {g.message}"
    return line + (f"\n    ({g.hint})" if g.warning and g.hint else "")



def ref_note(st: dict) -> str:
    """Which ref a command used for an environment, and how local and origin's differ."""
    rel, b = st["relation"], st["branch"]
    if rel in ("absent", "same", "local-only"):
        return ""
    if rel == "remote-only":
        return f"  (from origin/{b}; no local branch)"
    if rel == "behind":
        return f"  (from origin/{b}; local {b} is behind)"
    if rel == "ahead":
        return f"  (from local {b}; ahead of origin/{b}: not pushed)"
    return f"  (local {b} and origin/{b} have DIVERGED; showing local)"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], tty: bool | None = None,
          width: int | None = None) -> str:
    """Rows under headers. On a terminal (stdout a TTY) a rich table; piped, plain columns
    aligned to their widest cell (the last column is never padded), one row per line, so that
    `grep`, `awk` and `cut` work. Every cell is escaped (`safe`) before either renders it."""
    cells = [[c if type(c) is str else str(c) for c in row] for row in rows]
    if _CONTROL_RE.search("".join(c for row in cells for c in row)):  # one scan; escape only if needed
        cells = [[safe(c).replace("\n", "\\n") for c in row] for row in cells]  # one row, one line
    if tty is None:
        tty = sys.stdout.isatty()
    if tty:
        import io

        from rich.console import Console
        from rich.table import Table

        t = Table(*headers, box=None, header_style="bold", pad_edge=False)
        for row in cells:
            t.add_row(*row)
        buf = io.StringIO()
        Console(file=buf, force_terminal=True, width=width, highlight=False, markup=False).print(t)
        return buf.getvalue().rstrip("\n")
    columns = list(zip(*cells)) if cells else [()] * len(headers)
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(headers, columns)]
    fmt = "  ".join([f"{{:<{w}}}" for w in widths[:-1]] + ["{}"])  # the last column is never padded
    return "\n".join(fmt.format(*row) for row in [list(headers), *cells])
