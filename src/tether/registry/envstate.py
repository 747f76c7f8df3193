"""Where an environment's branch is, locally and on origin (one record of the one-pass read
each), and which of the two a command uses. Light on purpose: the kept `status` answer is
rebuilt from it without loading the registry (tether.registry.views)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tether.adapters.gitrepo import Git

# How an environment's local branch stands to origin's (EnvState.relation).
Relation = Literal["same", "local-only", "remote-only", "ahead", "behind", "diverged", "absent"]


@dataclass(frozen=True)
class EnvState:
    """Where an environment's branch is, locally and on origin, and which one a command uses.
    A fresh clone has only origin's; a local branch behind origin's is stale and origin's wins;
    one ahead holds unpushed moves and is used; diverged ones are reported and refused for moves."""

    model: str
    env: str
    branch: str
    local: str | None
    remote: str | None
    relation: Relation

    @property
    def commit(self) -> str | None:
        if self.relation in ("behind", "remote-only"):
            return self.remote
        return self.local

    @property
    def used(self) -> str | None:
        if self.commit is None:
            return None
        return f"origin/{self.branch}" if self.commit == self.remote and self.local != self.remote else self.branch

    def as_dict(self) -> dict:
        return {"branch": self.branch, "local": self.local, "remote": self.remote,
                "relation": self.relation, "used": self.used}


def relation_of(git: Git, lc: str | None, rc: str | None) -> Relation:
    """How the local branch's commit `lc` stands to origin's `rc` (None: no such branch)."""
    if lc is None and rc is None:
        return "absent"
    if rc is None:
        return "local-only"
    if lc is None:
        return "remote-only"
    if lc == rc:
        return "same"
    if git.is_ancestor(lc, rc):
        return "behind"
    if git.is_ancestor(rc, lc):
        return "ahead"
    return "diverged"
