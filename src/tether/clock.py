"""The one clock: every time tether records (move trailers, stamps, deploy logs) is UTC with
microseconds, so two moves in one second stay in order when read back (history.live_at)."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
