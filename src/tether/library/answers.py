"""What the read commands answer, as typed, frozen records: `list` (ReleaseRow), `status`
(ModelStatus), `history` (History), `show` (ShownRelease) and `diff` (ReleaseDiff).

Each is built from the answer tether.registry.views computes or keeps (`from_view`), and its
`as_dict()` is exactly what the command prints with `--json`: the typer commands print that
dict, and tests/workflow/test_api.py holds the fast read path (tether.cli.fastread, which
renders the kept answer directly) to the same bytes. Containers are tuples and read-only
mappings; `as_dict()` returns fresh plain dicts and lists a caller may change.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tether.core.manifest import Manifest

if TYPE_CHECKING:
    from tether.registry import views


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only view of a copy: a record's mapping cannot be changed through it."""
    return MappingProxyType(copy.deepcopy(dict(d or {})))


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(d))


# -- list ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseRow:
    """One release as `tether list` shows it (newest SemVer first)."""

    model: str
    version: str
    tag: str
    stage: str  # the environments it is live in (comma-separated), "archived" or "registered"
    created_at: str
    commit: str
    complete: bool
    problem: str | None  # why it is not a usable release (None: it is)
    kind: str | None  # None, "incomplete", "mismatch" or "unusable"
    metrics: Mapping[str, Any]
    note: str | None  # the release note (`tether release -m`)

    @classmethod
    def from_view(cls, row: Mapping[str, Any]) -> ReleaseRow:
        # metrics are flat (name -> number or string): a shallow copy is a whole one, and a
        # thousand rows cost no deep copies
        values: dict[str, Any] = {k: row[k] for k in _ROW}
        values["metrics"] = MappingProxyType(dict(row["metrics"]))
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {k: dict(self.metrics) if k == "metrics" else getattr(self, k) for k in _ROW}


_ROW = tuple(f.name for f in fields(ReleaseRow))  # `list --json`'s keys, in order (views.ROW_FIELDS)


# -- status -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BranchState:
    """Where an environment's branch is, locally and on origin, and which one tether reads."""

    branch: str
    local: str | None
    remote: str | None
    relation: str  # same, local-only, remote-only, ahead, behind, diverged, absent
    used: str | None  # the ref read: the branch, or origin/<branch>

    @classmethod
    def from_view(cls, d: Mapping[str, Any]) -> BranchState:
        return cls(d["branch"], d["local"], d["remote"], d["relation"], d["used"])

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class EnvironmentStatus:
    """What one environment runs."""

    release: str | None  # None: empty, or at a commit that is no release
    outside_commit: str | None  # its head, when it was committed outside tether and is no release
    state: BranchState
    gto: Mapping[str, Any] | None  # GTO's tags disagree with the branch (which decides)


@dataclass(frozen=True)
class ModelStatus:
    """`tether status` for one model: its latest release, what each environment runs, and
    which releases the work tree's HEAD is (`head`, `dirty`, `matches`: the "workspace")."""

    model: str
    latest: str | None
    environments: Mapping[str, EnvironmentStatus]
    head: str
    dirty: bool
    matches: tuple[str, ...]

    @classmethod
    def from_view(cls, st: views.ModelStatus) -> ModelStatus:
        envs = {e: EnvironmentStatus(v.release, v.outside_commit, BranchState.from_view(v.state.as_dict()),
                                     _frozen(v.gto) if v.gto else None)
                for e, v in st.environments.items()}
        return cls(st.model, st.latest, MappingProxyType(envs), st.head, st.dirty, tuple(st.matches))

    def as_dict(self) -> dict[str, Any]:
        envs = self.environments
        return {"model": self.model, "latest": self.latest,
                "environments": {e: v.release for e, v in envs.items()},
                "refs": {e: v.state.as_dict() for e, v in envs.items()},
                "gto": {e: _plain(v.gto) for e, v in envs.items() if v.gto},
                "workspace": {"commit": self.head, "dirty": self.dirty, "matches": list(self.matches)}}


# -- history ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    """A move's signature as git verified it, and the signing policy's verdict on it."""

    status: str  # git's %G? letter: G good, N none, …
    principal: str | None
    key: str | None
    verified: bool
    problem: str | None  # why the policy rejects the move (None: accepted)
    enforced: bool

    @classmethod
    def from_view(cls, d: Mapping[str, Any]) -> Signature:
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Move:
    """One move of an environment (newest first in a history): a promote, rollback or canary
    move tether made, a GTO tag (`source` "gto"), or a commit made outside tether ("outside")."""

    env: str
    commit: str
    action: str
    release: str  # the tag the environment then ran; "" when its tree matches no release
    tag_object: str
    previous: str
    approver: str
    reason: str
    time: str
    tree: str
    trailers: Mapping[str, str]
    source: str
    signature: Signature | None
    parents: tuple[str, ...] = ()  # the move commit's parents (a tether move: previous move, release commit)

    @classmethod
    def from_view(cls, d: Mapping[str, Any]) -> Move:
        plain = {f.name: d[f.name] for f in fields(cls) if f.name not in ("trailers", "signature", "parents")}
        sig = d["signature"]
        return cls(**plain, trailers=_frozen(d["trailers"]), signature=Signature.from_view(sig) if sig else None,
                   parents=tuple(d.get("parents") or ()))

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["parents"] = list(self.parents)
        out["trailers"] = _plain(self.trailers)
        out["signature"] = self.signature.as_dict() if self.signature else None
        return out


@dataclass(frozen=True)
class LiveAt:
    """With `at`: which release an environment ran at that time."""

    at: str
    release: str | None
    commit: str | None


@dataclass(frozen=True)
class EnvironmentHistory:
    branch: str
    ref: BranchState
    moves: tuple[Move, ...]
    live_at: LiveAt | None

    @classmethod
    def from_view(cls, d: Mapping[str, Any]) -> EnvironmentHistory:
        live = d.get("live_at")
        return cls(d["branch"], BranchState.from_view(d["ref"]), tuple(Move.from_view(e) for e in d["events"]),
                   LiveAt(live["at"], live["release"], live["commit"]) if live is not None else None)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"branch": self.branch, "ref": self.ref.as_dict(),
                               "events": [m.as_dict() for m in self.moves]}
        if self.live_at is not None:
            out["live_at"] = {"at": self.live_at.at, "release": self.live_at.release, "commit": self.live_at.commit}
        return out


@dataclass(frozen=True)
class History:
    """`tether history`: each environment's moves. `refused`: the signing policy rejects a move
    (the CLI prints the history, then exits 6; tether.api.history raises IntegrityError)."""

    model: str
    environments: Mapping[str, EnvironmentHistory]
    refused: str | None

    @classmethod
    def from_view(cls, d: Mapping[str, Any]) -> History:
        envs = {e: EnvironmentHistory.from_view(v) for e, v in d["environments"].items()}
        return cls(d["model"], MappingProxyType(envs), d.get("refused"))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model,
                               "environments": {e: v.as_dict() for e, v in self.environments.items()}}
        if self.refused:
            out["refused"] = self.refused
        return out


# -- show ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShownRelease:
    """`tether show REF`: the release REF names and its manifest, derived from its commit."""

    tag: str
    stage: str
    manifest: Manifest
    note: str | None

    @classmethod
    def from_view(cls, d: Mapping[str, Any]) -> ShownRelease:
        return cls(d["tag"], d["stage"], copy.deepcopy(d["manifest"]), d.get("note"))

    def as_dict(self) -> dict[str, Any]:
        """What `show --json` prints: the manifest, with the release note beside its keys."""
        out: dict[str, Any] = copy.deepcopy(dict(self.manifest))
        if self.note:
            out["note"] = self.note
        return out


# -- diff ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FilesChange:
    changed: bool
    added: tuple[str, ...]
    removed: tuple[str, ...]
    modified: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "added": list(self.added), "removed": list(self.removed),
                "modified": list(self.modified)}


@dataclass(frozen=True)
class ValueChange:
    """A value in release `a` (`before`) and in release `b` (`after`): JSON's "from" and "to"."""

    before: Any
    after: Any
    delta: float | None = None  # metrics only: after - before, when both are numbers

    def as_dict(self, with_delta: bool = False) -> dict[str, Any]:
        out = {"from": copy.deepcopy(self.before), "to": copy.deepcopy(self.after)}
        return {**out, "delta": self.delta} if with_delta else out


@dataclass(frozen=True)
class ParamsChange:
    changed: bool
    keys: Mapping[str, ValueChange]

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "keys": {k: v.as_dict() for k, v in self.keys.items()}}


@dataclass(frozen=True)
class ThresholdChange:
    changed: bool
    before: Any
    after: Any

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "from": self.before, "to": self.after}


@dataclass(frozen=True)
class ReleaseDiff:
    """`tether diff A B`: what changed from release `before` to release `after`."""

    before: str
    after: str
    weights: FilesChange
    data: FilesChange
    code: FilesChange
    params: ParamsChange
    threshold: ThresholdChange
    feature_schema_changed: bool
    metrics: Mapping[str, ValueChange]

    @classmethod
    def from_view(cls, d: Mapping[str, Any]) -> ReleaseDiff:
        """From a tether.core.manifest.ManifestDiff."""
        c = d["components"]

        def files(x: Mapping[str, Any]) -> FilesChange:
            return FilesChange(x["changed"], tuple(x["added"]), tuple(x["removed"]), tuple(x["modified"]))

        params = ParamsChange(c["params"]["changed"], MappingProxyType(
            {k: ValueChange(copy.deepcopy(v["from"]), copy.deepcopy(v["to"])) for k, v in c["params"]["keys"].items()}))
        t = c["threshold"]
        metrics = {k: ValueChange(v["from"], v["to"], v["delta"]) for k, v in d["metrics"].items()}
        return cls(d["from"], d["to"], files(c["weights"]), files(c["data"]), files(c["code"]), params,
                   ThresholdChange(t["changed"], t["from"], t["to"]), d["feature_schema_changed"],
                   MappingProxyType(metrics))

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.after,
                "components": {"weights": self.weights.as_dict(), "data": self.data.as_dict(),
                               "code": self.code.as_dict(), "params": self.params.as_dict(),
                               "threshold": self.threshold.as_dict()},
                "feature_schema_changed": self.feature_schema_changed,
                "metrics": {k: v.as_dict(with_delta=True) for k, v in self.metrics.items()}}
