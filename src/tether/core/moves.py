"""The move vocabulary: what one move of an environment is (`Event`), the actions a move can
record, the `Tether-*` trailers a move commit carries and the one writer of its message, and the
canary weight a move carries. Pure: no git, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.errors import IntegrityError, UsageError

ACTIONS = ("promote", "rollback", "weight")  # weight: a canary's traffic share changed (tether.canary)

# The trailers of a move commit: `git log --first-parent ENV` is the audit trail, and the
# registry, `check` and the server-side hook parse these names back.
ACTION = "Tether-Action"
RELEASE = "Tether-Release"
TAG_OBJECT = "Tether-Tag-Object"
PREVIOUS = "Tether-Previous"
APPROVER = "Tether-Approver"
REASON = "Tether-Reason"
TIME = "Tether-Time"
REQUIRED = (ACTION, RELEASE, TAG_OBJECT, PREVIOUS, APPROVER, REASON)  # every move tether makes has these
WEIGHT = "Tether-Weight"  # a canary's traffic share in percent
PREVIOUS_WEIGHT = "Tether-Previous-Weight"
GTO_TAG = "Tether-Gto-Tag"  # the GTO assignment tag pushed with the move
ALLOW_INCOMPLETE = "Tether-Allow-Incomplete"  # the reasons a gate was passed anyway
ALLOW_REGRESSION = "Tether-Allow-Regression"
SKIP_STAGING = "Tether-Skip-Staging"
POLICY = "Tether-Policy"  # the guard's policy, on the moves `tether guard` makes
GUARD_BREACH = "Tether-Guard-Breach"
CANARY = "Tether-Canary"  # the canary (env@commit) whose guard promoted or rolled back
GROUP = "Tether-Group"  # the moves made as one (tether.commands.move_group): the same id on each


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


def one_line(text: str | None, what: str, hint: str | None = None) -> str:
    """A recorded text (approver, reason, a gate's override reason) on one line: a trailer
    cannot span lines. Empty is a usage error; `hint` defaults to naming the option."""
    value = " ".join((text or "").split())
    if not value:
        raise UsageError(f"{what} is empty", hint=hint or f"say {what.split()[0]} with --{what.split()[0]} \"…\"")
    return value


def move_message(title: str, reason: str, trailers: dict[str, str]) -> str:
    """A move commit's message: the title, the reason, then one `Name: value` trailer a line."""
    body = "\n".join(f"{k}: {v}" for k, v in trailers.items())
    return f"{title}\n\n{reason}\n\n{body}\n"


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
