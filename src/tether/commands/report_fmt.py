"""Small formatters the report's pages share (tether.commands.report_html and its parts): one
timestamp format (tether.clock.shown: the one of every text answer), file sizes, numbers. Pure."""

from __future__ import annotations

from datetime import datetime

from tether.clock import parse_iso, shown


def stamp(text: object) -> str:
    """Any ISO time as every text answer shows it (tether.clock.shown)."""
    return shown(text)


def when(text: object) -> datetime | None:
    return parse_iso(str(text or ""))


def size(n: object) -> str:
    """Bytes for a person: 812 B, 4.1 kB, 12.3 MB (decimal units, as the deploy bar counts)."""
    if not num(n):
        return ""
    value = float(n)  # type: ignore[arg-type]
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def short(value: object) -> str:
    return str(value)[:12] if value else "-"
