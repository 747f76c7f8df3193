"""Pure rules over an environment's events (newest first): what was live when, and where a
rollback goes. Events are ordered by their place in first-parent history, never by clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from tether.clock import parse_iso
from tether.errors import UsageError
from tether.core.moves import Event

E = TypeVar("E")


def parse_time(text: str) -> datetime:
    t = parse_iso(text)
    if t is None:
        raise UsageError(f"'{text}' is not an ISO-8601 time",
                         hint="e.g. 2026-11-24T10:30:00Z (a time without zone is UTC)")
    return t


def live_at(events: Sequence[E], at: datetime, time: Callable[[E], str] = lambda ev: ev.time) -> E | None:  # type: ignore[attr-defined]
    """The move in force at `at`: the newest event whose time is not after it. Events
    carry microsecond times, and ties keep history order, so two moves in one second are not
    ambiguous. `time` reads an event's time (an Event's, or a kept view row's)."""
    for ev in events:
        if parse_time(time(ev)) <= at:
            return ev
    return None


def rollback_target(events: list[Event]) -> str | None:
    """The last known good release: the newest release live before the current one, skipping
    every release a rollback moved away from (v1 → v2 → v3, rollback, rollback ends at v1)."""
    if not events:
        return None
    current = events[0].release
    bad = {current, ""} | {ev.previous for ev in events if ev.action == "rollback"}
    for ev in events[1:]:
        if ev.release not in bad:
            return ev.release
    return None
