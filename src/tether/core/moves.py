"""The move vocabulary: what one move of an environment is (`Event`), the actions a move can
record, and the canary weight a move carries. Pure: no git, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.errors import IntegrityError, UsageError

ACTIONS = ("promote", "rollback", "weight")  # weight: a canary's traffic share changed (tether.canary)
WEIGHT = "Tether-Weight"


@dataclass(frozen=True)
class Event:
    """One move of an environment, newest first in history. `source` says who made it:
    "tether" (a commit with tether's trailers), "outside" (any other commit on the branch: a
    hand commit, a merge, a reset), or "gto" (a GTO assignment tag). `release` is the tag whose
    tree the environment then had, or "" when it matches no release."""

    env: str
    commit: str
    action: str
    release: str  # tag name, or "" (matches no release)
    tag_object: str
    previous: str  # previous tag name, or "none"
    approver: str
    reason: str
    time: str
    tree: str
    trailers: dict = field(default_factory=dict)
    source: str = "tether"



def parse_weight(text, what: str = "weight") -> int:
    """A whole percentage 0..100; UsageError otherwise (a person typed it or wrote it)."""
    value = str(text).strip()
    if not (value.isascii() and value.isdigit()) or int(value) > 100:  # ASCII: "١٠" is not 10
        raise UsageError(f"{what} must be a whole percentage from 0 to 100, not {value[:20]!r}")
    return int(value)


def weight_of(events: list[Event]) -> int:
    """The weight in force: the newest move's `Tether-Weight`. A move without one (a promotion
    made before the environment was a canary, a hand commit) sends the canary no traffic; a
    malformed one is refused, never guessed."""
    if not events or events[0].source != "tether":
        return 0
    raw = events[0].trailers.get(WEIGHT)
    if raw is None:
        return 0
    try:
        return parse_weight(raw)
    except UsageError:
        raise IntegrityError(f"{events[0].env}'s move {events[0].commit[:12]} records {WEIGHT}: {raw[:20]!r}, "
                             "not a percentage", hint="move the weight again with `tether canary weight`") from None
