"""A release tag, read from one `for-each-ref` record: its name, its commit, and the manifest
DERIVED from that commit (tether.registry.derive), with the one verdict on whether it is a
usable release. The registry (tether.registry.registry) makes them and batches their derivation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from tether.core import manifest as mf
from tether.errors import GateFailed, IntegrityError
from tether.adapters.gitrepo import Git, RefRecord
from tether.adapters.workspace import Workspace
from tether.core.refs import ReleaseName, parse_tag
from tether.core.semver import Version

if TYPE_CHECKING:
    from tether.core import dvcgraph
    from tether.registry import derive
    from tether.adapters.refindex import RefIndex

# The one verdict on "not a usable release" and its exit code, the same in every command:
# a part is missing (5, `promote --allow-incomplete` overrides); the tag message lies about
# its commit, or the commit holds no usable pipeline for the model (6).
PROBLEM_ERRORS = {"incomplete": GateFailed, "mismatch": IntegrityError, "unusable": IntegrityError}


@dataclass(frozen=True)
class ReleaseState:
    """What a release's derivation and its attestation say about it, read once per release."""

    manifest: dict | None
    problem: str | None
    kind: str | None  # None, "incomplete", "mismatch" or "unusable" (Release.problem_kind)
    missing: list[str]
    fixes: dict
    attestation: list[str]  # how the manifest in the tag message disagrees with the commit
    unresolved: list[str]


@dataclass(frozen=True)
class Release:
    """A release tag. Its manifest is DERIVED from the tagged commit (see derive.py), whoever
    made the tag; the manifest in an annotated tag's message is only an attestation checked
    against it. Derivation is batched per model by the registry on first use."""

    name: ReleaseName
    tag: str
    tag_object: str
    commit: str
    tree: str
    created_at: str
    creator: str
    annotated: bool
    message: str | None  # None: not read yet (see Registry(messages=False))
    loader: Callable[[str], str] | None = field(default=None, repr=False, compare=False)
    deriver: Callable[["Release"], derive.Derived] | None = field(default=None, repr=False, compare=False)

    @property
    def version(self):
        return self.name.version

    @cached_property
    def attested(self) -> dict | None:
        """The manifest `tether release` wrote into the tag message, if any and well-formed."""
        if not self.annotated:
            return None
        if self.message is not None:
            message = self.message
        elif self.loader is not None:
            message = self.loader(self.tag_object)
        else:
            return None
        try:
            return mf.loads(message)
        except mf.ManifestError:
            return None

    @cached_property
    def note(self) -> str | None:
        """The release note given with `release -m`: the tag message's text before its manifest."""
        if not self.annotated:
            return None
        if self.message is not None:
            return mf.note(self.message)
        return mf.note(self.loader(self.tag_object)) if self.loader is not None else None

    @cached_property
    def _state(self) -> ReleaseState:
        from tether.registry import derive

        if self.deriver is None:
            raise TypeError("a Release needs its registry's deriver")
        d = self.deriver(self)
        if d.manifest is None:
            return ReleaseState(manifest=None, problem="; ".join(d.problems) or "no pipeline at its commit",
                                kind="unusable", missing=[], fixes={}, attestation=[], unresolved=[])
        attested = self.attested
        att = []
        if attested is not None:
            if attested.get("model") != self.name.model or attested.get("version") != str(self.name.version):
                att.append(f"its message describes {attested.get('model')}@v{attested.get('version')}")
            att += derive.attestation_problems(d.manifest, attested, partial=bool(d.unresolved))
        meta = {"model": self.name.model, "version": str(self.name.version),
                "created_at": self.created_at, "released_by": self.creator}
        manifest = derive.merge(d.manifest, attested if not att else None, meta)
        problem, kind = None, None
        if att:
            problem, kind = "the manifest in its tag message disagrees with its commit: " + "; ".join(att), "mismatch"
        elif d.problems:
            problem, kind = "; ".join(d.problems), "unusable"
        elif d.missing_parts:
            problem, kind = "incomplete: no " + ", ".join(d.missing_parts), "incomplete"
        return ReleaseState(manifest=manifest, problem=problem, kind=kind, missing=d.missing_parts,
                            fixes=d.fixes, attestation=att, unresolved=d.unresolved)

    @property
    def manifest(self) -> dict | None:
        return self._state.manifest

    @property
    def problem(self) -> str | None:
        return self._state.problem

    @property
    def problem_kind(self) -> str | None:
        """None, "incomplete" (a part is missing), "mismatch" (the attestation lies), or
        "unusable" (no pipeline for the model at its commit)."""
        return self._state.kind

    def require_trusted(self, what: str) -> dict:
        """The manifest, unless the release cannot be trusted: its tag message lies about its
        commit (mismatch) or its commit holds no usable pipeline (exit 6, nothing done). An
        incomplete release passes: what it lacks is the gates' business (promote)."""
        if self.manifest is None or self.problem_kind in ("mismatch", "unusable"):
            raise PROBLEM_ERRORS[self.problem_kind or "unusable"](
                f"{self.tag} cannot be {what}: {self.problem}",
                hint=f"the tag or its commit was made or edited by hand; see `tether check` for {self.tag}")
        return self.manifest

    @property
    def missing_parts(self) -> list[str]:
        return self._state.missing

    @property
    def fixes(self) -> dict:
        return self._state.fixes

    @property
    def unresolved(self) -> list[str]:
        return self._state.unresolved


def encode_name(n: ReleaseName) -> list:
    v = n.version
    return [n.model, v.major, v.minor, v.patch, list(v.prerelease), list(v.build)]


def decode_name(x: list) -> ReleaseName:
    model, major, minor, patch, pre, build = x
    if not (isinstance(model, str) and all(type(i) is int for i in (major, minor, patch))
            and all(isinstance(p, str) for p in (*pre, *build))):
        raise TypeError("not a release name")
    return ReleaseName(model, Version(major, minor, patch, tuple(pre), tuple(build)))


def release_from_record(rec: RefRecord, loader=None, deriver=None, index: "RefIndex | None" = None) -> Release | None:
    tag = rec.name[len("refs/tags/"):]
    name = (parse_tag(tag) if index is None
            else index.parsed("release", tag, parse_tag, encode_name, decode_name))
    if name is None:
        return None
    return Release(
        name=name,
        tag=tag,
        tag_object=rec.objectname,
        commit=rec.commit,
        tree=rec.tree,
        created_at=rec.creator_date,
        creator=rec.creator,
        annotated=rec.objecttype == "tag",
        message=rec.message if loader is None or rec.whole else None,
        loader=loader,
        deriver=deriver,
    )


# -- models only the release tags declare (Registry._adopt_models) -------------------------
def declares_no_model(ws: Workspace) -> bool:
    """HEAD's dvc.yaml is there and declares no model (not: it is missing or unreadable, which
    the command that needs it reports)."""
    try:
        return not ws.models
    except Exception:  # noqa: BLE001 - no dvc.yaml, or a broken one: nothing to adopt here
        return False


def declared_models(git: Git, releases: dict[str, list[Release]]) -> dict[str, dvcgraph.Artifact]:
    """Each tagged model as its newest release's own commit declares it in dvc.yaml (one `git
    cat-file` for all); a model no release commit declares is left out."""
    from tether.core import dvcgraph
    from tether.adapters.gitrepo import cat_files
    from tether.core.settings import load_yaml

    specs = [f"{r.commit}:dvc.yaml" for rels in releases.values() for r in rels]
    blobs = cat_files(git, list(dict.fromkeys(specs)))
    found: dict[str, dvcgraph.Artifact] = {}
    for model, rels in releases.items():
        for r in rels:  # newest first
            raw = blobs.get(f"{r.commit}:dvc.yaml")
            try:
                art = dvcgraph.models(load_yaml(raw.decode()) or {}).get(model) if raw else None
            except Exception:  # noqa: BLE001 - a broken dvc.yaml declares nothing
                art = None
            if art is not None:
                found[model] = art
                break
    return found
