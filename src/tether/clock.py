"""The one clock: every time tether records (move trailers, stamps, deploy logs) is UTC with
microseconds, so two moves in one second stay in order when read back (history.live_at); every
time it shows a person (`shown`: text output, the report) is ISO 8601 to the second in UTC."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def iso_of(t: float) -> str:
    """A time.time() value to the second, as the server reports when a worker started."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime | None:
    """An ISO-8601 time (`Z` or an offset; none means UTC), or None when `text` is no time.
    Times come from trailers, kept views and logs that a person can write: never trusted."""
    try:
        t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def epoch(text: str) -> int:
    """An ISO time as whole seconds since the epoch (0 when it is no time)."""
    t = parse_iso(text)
    return int(t.timestamp()) if t is not None else 0


def shown(text: object) -> str:
    """A recorded time as tether shows it to a person, in every text answer and the report: ISO
    8601 to the second (truncated), in UTC, its zone said (`2026-12-05T15:40:12+00:00`). Text
    that is no time is returned as it is (a person can write a trailer)."""
    t = parse_iso(str(text or ""))
    return t.astimezone(timezone.utc).isoformat(timespec="seconds") if t is not None else str(text or "")
