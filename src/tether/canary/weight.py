"""Canary environments: the traffic weight as a recorded move (the weight file deploy writes
beside a canary's `current` for `tether serve --canary-target` is tether.servedir.weight).

A canary environment (`meta.tether.canaries: {canary: production}`) is an ordinary environment
branch. Promoting to it records `Tether-Weight: <first step>`; every later change of the weight
is its own commit on the branch, whose tree is still the release's tree (so the branch stays a
release, and `git checkout canary && dvc pull` still restores it), with action `weight` (or
`rollback` when the guard takes the traffic away), the approver, the reason and the evidence.
The weight in force is the newest move's trailer, read back from git and validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.clock import now_iso
from tether.errors import Conflict, IntegrityError, NotFound, UsageError
from tether.core import moves
from tether.core.moves import WEIGHT, weight_of
from tether.registry.registry import Registry
from tether.registry.release import Release
from tether.adapters.workspace import Workspace


def stable_of(ws: Workspace, model: str, env: str) -> str:
    stable = ws.settings(model).canaries.get(env)
    if stable is None:
        raise UsageError(f"{env} is not a canary environment of {model}",
                         hint="declare it in dvc.yaml: meta.tether.canaries: {" + env + ": production}")
    return stable


@dataclass(frozen=True)
class WeightPlan:
    model: str
    env: str
    branch: str
    release: Release
    old_head: str
    local_head: str | None
    weight: int
    previous_weight: int
    action: str  # weight | rollback
    approver: str
    reason: str
    notes: dict = field(default_factory=dict)

    def message(self, time: str) -> str:
        verb = "roll back" if self.action == "rollback" else "set weight of"
        trailers = {moves.ACTION: self.action, moves.RELEASE: self.release.tag,
                    moves.TAG_OBJECT: self.release.tag_object, moves.PREVIOUS: self.release.tag,
                    moves.APPROVER: self.approver, moves.REASON: self.reason, WEIGHT: str(self.weight),
                    moves.PREVIOUS_WEIGHT: str(self.previous_weight), **self.notes, moves.TIME: time}
        return moves.move_message(f"{verb} {self.env} ({self.release.tag}) to {self.weight}%", self.reason, trailers)

    def as_dict(self) -> dict:
        return {"action": self.action, "model": self.model, "env": self.env, "release": self.release.tag,
                "weight": self.weight, "previous_weight": self.previous_weight, "approver": self.approver,
                "reason": self.reason, "old_head": self.old_head, "notes": self.notes}


def _one_line(text: str, what: str) -> str:
    return moves.one_line(text, what, hint=f"say it with --{what} \"…\"")


def plan_weight(ws: Workspace, model: str | None, env: str, weight: int, *, approver: str, reason: str,
                action: str = "weight", expect_head: str | None = None, notes: dict | None = None) -> WeightPlan:
    """The weight move for the canary's release now live in `env`. `expect_head` (the guard's)
    refuses with Conflict if the branch moved since the sample that decided it."""
    model = ws.model(model)
    stable_of(ws, model, env)
    if not 0 <= weight <= 100:
        raise UsageError(f"weight must be a whole percentage from 0 to 100, not {weight}")
    approver, reason = _one_line(approver, "approver"), _one_line(reason, "reason")
    reg = Registry(ws, messages=False)
    state = reg.env_state(model, env)
    if state.relation == "diverged":
        raise Conflict(f"{state.branch} has diverged from origin/{state.branch}",
                       hint="reconcile the two histories before moving the environment")
    events = reg.history(model, env)
    head = state.commit
    if head is None or not events:
        raise NotFound(f"{env} of {model} holds no release yet", hint=f"promote one first: tether promote REF --to {env}")
    if expect_head is not None and head != expect_head:
        raise Conflict(f"{state.branch} moved since the guard's sample (expected {expect_head[:12]}, now {head[:12]})",
                       hint="someone else moved it first; see `tether history --env " + env + "`")
    live = events[0]
    if live.source != "tether" or not live.release:
        raise IntegrityError(f"{state.branch}'s head {live.commit[:12]} was not made by tether",
                             hint=f"move {env} to a release with tether promote first")
    reg.check_tag_integrity([live])
    rel = reg.by_tag(live.release)
    if rel is None or rel.tree != live.tree:
        raise IntegrityError(f"{state.branch}'s tree is not {live.release}'s tree")
    previous = weight_of(events)
    if previous == weight:
        raise Conflict(f"{env} already sends {weight}% of the traffic to {rel.tag}", hint="nothing to do")
    return WeightPlan(model, env, state.branch, rel, head, state.local, weight, previous, action, approver, reason,
                      dict(notes or {}))


def execute_weight(ws: Workspace, plan: WeightPlan) -> str:
    """A commit whose tree is the release's tree, swapped in by compare-and-swap."""
    parents = [plan.old_head, plan.release.commit]
    new = ws.git.commit_tree(plan.release.tree, parents, plan.message(now_iso()))
    ws.git.update_ref(f"refs/heads/{plan.branch}", new, plan.local_head,
                      f"tether: {plan.action} {plan.env} to {plan.weight}%")
    return new
