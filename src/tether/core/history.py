"""Pure rules over an environment's events (newest first): what was live when, where a
rollback goes, and which rollback a promotion must override. Events are ordered by their place in first-parent history, never by clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from tether.clock import parse_iso
from tether.errors import UsageError
from tether.core.moves import OVERRIDE_ROLLBACK, OVERRIDE_ROLLBACK_MOVE, REQUIRED, Event

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


# -- a release the environment was rolled back away from ----------------------------------------
class ReleaseFacts(Protocol):
    """What a move is checked against: the release tag's object, its commit and that commit's tree."""

    @property
    def tag_object(self) -> str: ...

    @property
    def commit(self) -> str: ...

    @property
    def tree(self) -> str: ...


@dataclass(frozen=True)
class RollbackBlock:
    """The newest rollback tether made that moved an environment away from a release, and the
    promotion of that release since that overrode it (None: nothing has)."""

    rollback: Event
    override: Event | None = None


def not_tethers_move(ev: Event, below: Event | None, rel: ReleaseFacts | None) -> str | None:
    """Why `ev` is not a move tether made (None: it is one): every trailer tether writes, the
    recorded tag object, the release's tree, and the parents [the move below it, the release's
    commit] (the first move on a branch: [the release's commit]), as the pre-receive hook checks.
    A hand commit with tether's trailers written into its message fails here."""
    if ev.source != "tether":
        return "it is not a move tether made"
    missing = [k for k in REQUIRED if not ev.trailers.get(k)]
    if missing:
        return "it lacks " + ", ".join(missing)
    if rel is None or ev.tag_object != rel.tag_object:
        return f"it records a tag object that is not {ev.release}'s"
    if ev.tree != rel.tree:
        return f"its tree is not {ev.release}'s tree"
    on_branch = below is not None and below.source != "gto"
    if on_branch and below is not None and ev.parents != (below.commit, rel.commit):
        return "its parents are not [the move below it, the release's commit]"
    if not on_branch and (not ev.parents or ev.parents[-1] != rel.commit or len(ev.parents) > 2):
        return "its last parent is not the release's commit"
    return None


def rollback_block(events: list[Event], tag: str,
                   release: Callable[[str], ReleaseFacts | None]) -> tuple[RollbackBlock | None, list[str]]:
    """Whether promoting `tag` must override a rollback: the newest rollback among `events`
    (an environment's history, newest first) that moved the environment away from `tag`, and
    the promotion of `tag` since that overrode it (its `Tether-Override-Rollback-Move` names
    that rollback). Only moves tether made count (`not_tethers_move`); what the rollback moved
    away from is what history says ran before it, never its own `Tether-Previous`. Also
    returns "commit: why" for each commit that claims such a rollback or override and is not
    one of tether's moves: ignored, and said so."""
    ignored: list[str] = []

    def verdict(i: int) -> str | None:
        below = events[i + 1] if i + 1 < len(events) else None
        return not_tethers_move(events[i], below, release(events[i].release))

    for i, ev in enumerate(events):
        if ev.action != "rollback" or ev.source != "tether":
            continue
        away = events[i + 1].release if i + 1 < len(events) else ""
        if tag not in (away, ev.previous) or ev.release == tag:  # a canary's 0 % keeps its release: not away
            continue
        why = verdict(i) or (None if away == tag else f"{tag} did not run before it")
        if why:
            ignored.append(f"{ev.commit[:12]} ({why})")
            continue
        for j in range(i):
            later = events[j]
            if later.release != tag or not later.trailers.get(OVERRIDE_ROLLBACK):
                continue
            why = verdict(j) or (None if later.action == "promote" and
                                 later.trailers.get(OVERRIDE_ROLLBACK_MOVE) == ev.commit else
                                 f"it overrides another rollback than {ev.commit[:12]}")
            if why:
                ignored.append(f"{later.commit[:12]} ({why})")
            else:
                return RollbackBlock(ev, later), ignored
        return RollbackBlock(ev), ignored
    return None, ignored


def names_reason(text: str, reason: str) -> bool:
    """Whether an override's text quotes the rollback's reason (case and spacing aside)."""
    def norm(s: str) -> str:
        return " ".join(s.split()).casefold()

    return bool(norm(reason)) and norm(reason) in norm(text)
