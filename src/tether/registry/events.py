"""An environment's moves as events: a commit with tether's trailers, a commit made outside
tether, and GTO's tags chained and merged with the branch's moves, newest first. Ordered by
position in history; times only interleave GTO's tags with a branch's moves. Also what the
registry reads of GTO's tags (their records, where they disagree with the branch) and the
integrity rule on the tags moves recorded."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from tether.core import moves
from tether.clock import epoch
from tether.errors import IntegrityError
from tether.adapters.gitlog import LogEntry
from tether.adapters.gitrepo import RefRecord
from tether.core.moves import ACTIONS, Event

if TYPE_CHECKING:
    from tether.core import gto
    from tether.adapters.refindex import RefIndex
    from tether.registry.release import Release


def parse_event(env: str, e: LogEntry) -> Event | None:
    t = e.trailers
    if t.get(moves.ACTION) not in ACTIONS or moves.RELEASE not in t:
        return None
    return Event(
        env=env,
        commit=e.commit,
        action=t[moves.ACTION],
        release=t[moves.RELEASE],
        tag_object=t.get(moves.TAG_OBJECT, ""),
        previous=t.get(moves.PREVIOUS, "none"),
        approver=t.get(moves.APPROVER, ""),
        reason=t.get(moves.REASON, ""),
        time=t.get(moves.TIME, e.date),
        tree=e.tree,
        trailers=t,
        parents=e.parents,
    )


def outside_event(env: str, e: LogEntry, release: Release | None, previous: str) -> Event:
    return Event(
        env=env,
        commit=e.commit,
        action="outside",
        release=release.tag if release else "",
        tag_object=release.tag_object if release else "",
        previous=previous,
        approver=e.author,
        reason=e.subject or "(no message)",
        time=e.date,
        tree=e.tree,
        trailers=e.trailers,
        source="outside",
        parents=e.parents,
    )


def branch_events(env: str, entries: list[LogEntry],
                  release_at: Callable[[LogEntry], Release | None]) -> list[Event]:
    """Every move down the first-parent chain (`entries`, newest first) to the first move
    tether made: commits without tether's trailers above it are moves made outside tether (a
    hand commit, a merge), never the end of history, each named by the release `release_at`
    finds for it. A branch tether never moved is one outside move."""
    parsed = [parse_event(env, e) for e in entries]
    oldest = max((i for i, ev in enumerate(parsed) if ev is not None), default=-1)
    if oldest < 0:
        entries, parsed = entries[:1], [None]
    else:
        entries, parsed = entries[: oldest + 1], parsed[: oldest + 1]
    events: list[Event] = [None] * len(entries)  # type: ignore[list-item]
    previous = "none"
    for i in range(len(entries) - 1, -1, -1):  # oldest first, so `previous` is known
        ev = parsed[i]
        if ev is None:
            ev = outside_event(env, entries[i], release_at(entries[i]), previous)
        events[i] = ev
        previous = ev.release or "none"
    return events


def gto_stage_events(records: list[gto.TagRecord], tag_records: dict[str, RefRecord], releases: list[Release],
                     model: str, env: str) -> list[Event]:
    """GTO's assignment and unassignment tags of `model` for stage `env`, newest first, each
    mapped (as GTO maps it) to the release (of `releases`, newest first) registered at the
    commit it points at."""
    out = []
    at: dict[str, Release] = {}
    for x in reversed(releases):  # the first (newest) release at a commit wins, as before
        at[x.commit] = x
    for r in records:
        t = r.tag
        if t.model != model or t.stage != env or t.action not in ("assign", "unassign"):
            continue
        rec = tag_records[t.name]
        rel = at.get(r.commit)
        out.append(Event(
            env=env, commit=r.commit, action=t.action,
            release=rel.tag if (rel and t.action == "assign") else "",
            tag_object=rec.objectname, previous="", approver=rec.creator,
            reason=(rec.message or "").strip().splitlines()[0] if rec.message else t.name,
            time=rec.creator_date, tree=rel.tree if rel else "", trailers={"Gto-Tag": t.name},
            source="gto"))
    out.sort(key=lambda e: epoch(e.time), reverse=True)
    return chain(out)


def check_tag_integrity(events: list[Event], by_tag: Callable[[str], Release | None]) -> None:
    """A tag that moved or was re-created after it went live is an integrity failure."""
    for ev in events:
        if ev.source != "tether":
            continue  # derived from the tags as they are now: nothing recorded to compare
        rel = by_tag(ev.release)
        if rel is None:
            raise IntegrityError(
                f"{ev.release}, live in {ev.env} at {ev.commit[:12]}, no longer exists as a tag",
                hint=f"restore the tag: git tag -a {ev.release} … must point at tag object {ev.tag_object[:12]}",
            )
        if ev.tag_object and rel.tag_object != ev.tag_object:
            raise IntegrityError(
                f"tag {ev.release} was moved or re-created after it was {ev.action}d to {ev.env} "
                f"(recorded tag object {ev.tag_object[:12]}, now {rel.tag_object[:12]})",
                hint="releases never change: restore the original tag from a clone or the remote",
            )


# -- GTO's tags ---------------------------------------------------------------------------
def gto_tag_records(tag_records: dict[str, RefRecord], index: RefIndex | None) -> list[gto.TagRecord]:
    """Every annotated GTO tag (lightweight ones do not count for GTO either), each name parsed
    once per ref index."""
    from tether.core import gto

    recs = []
    for name, rec in tag_records.items():
        if rec.objecttype != "tag":
            continue
        t = gto.parse_gto_tag(name) if index is None else index.parsed(
            "gto", name, gto.parse_gto_tag, gto.encode_tag, gto.decode_tag)
        if t is not None:
            recs.append(gto.TagRecord(t, rec.commit, epoch(rec.creator_date)))
    return recs


def newest_stage_tag(recs: list[gto.TagRecord], env: str) -> str | None:
    """The name of the newest assignment or unassignment tag for stage `env` (None: none)."""
    staged = [r for r in recs if r.tag.stage == env and r.tag.action in ("assign", "unassign")]
    if not staged:
        return None
    return max(staged, key=lambda r: (r.time, r.tag.name)).tag.name


def stage_disagreement(recs: list[gto.TagRecord], model: str, env: str, newest: str, live: str,
                       rel: Release | None, releases: list[Release]) -> dict | None:
    """{"tag": newest, "gto": the release GTO's tags `recs` put in stage `env` ("" for none,
    else a tag of `releases` or a commit id), "branch": `live` (the branch's release, `rel`),
    "problem"}; None when they agree (see Registry.gto_disagreement)."""
    from tether.core import gto

    try:
        holder = gto.stage_holders(recs, model).get(env)
    except ValueError as exc:
        return {"tag": newest, "gto": "", "branch": live, "problem": str(exc)}
    if (holder[1] if holder else None) == (rel.commit if rel else None):
        return None
    said = ""
    if holder is not None:
        at = next((r for r in releases if r.commit == holder[1]), None)
        said = at.tag if at is not None else holder[1]
    return {"tag": newest, "gto": said, "branch": live, "problem": None}


def chain(events: list[Event]) -> list[Event]:
    """GTO events (newest first) with each `previous` set from the one before it."""
    prev, out = "none", list(events)
    for i in range(len(out) - 1, -1, -1):
        out[i] = dataclasses.replace(out[i], previous=prev)
        prev = out[i].release or "none"
    return out


def merge_newest_first(branch: list[Event], foreign: list[Event]) -> list[Event]:
    if not foreign:
        return branch
    out, i, j = [], 0, 0
    while i < len(branch) or j < len(foreign):
        if j >= len(foreign) or (i < len(branch) and epoch(branch[i].time) >= epoch(foreign[j].time)):
            out.append(branch[i])
            i += 1
        else:
            out.append(foreign[j])
            j += 1
    return out
