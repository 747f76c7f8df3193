"""`tether check` (for CI) and the per-release part of the promote gate: every release tag is
complete, its manifest matches its tree, and every object it needs is on the DVC remote."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from tether.core import moves
from tether.core import manifest as mf
from tether.core.semver import Version
from tether.adapters.dvcstore import DvcStore
from tether.adapters.workspace import Workspace
from tether.errors import Conflict, IntegrityError, StorageError, TetherError
from tether.registry.registry import Registry
from tether.registry.release import PROBLEM_ERRORS, Release

# The kinds of finding, and the one mapping from a finding to its exception (and so its exit
# code), used by `check`, the promote gate and every command that meets an unusable release.
FindingKind = Literal["incomplete", "mismatch", "unusable", "missing-objects", "moved-tag", "signature",
                      "hidden-moves", "gto-disagrees"]
INCOMPLETE: Final = "incomplete"
MISMATCH: Final = "mismatch"
UNUSABLE: Final = "unusable"
MISSING: Final = "missing-objects"
MOVED: Final = "moved-tag"
SIGNATURE: Final = "signature"  # the signing policy rejects a release tag or an environment move
HIDDEN: Final = "hidden-moves"  # moves an environment branch reaches off its first-parent chain (rewritten history)
GTO: Final = "gto-disagrees"  # GTO's tags put another release in an environment than its branch
FINDING_ERRORS = {MOVED: IntegrityError, SIGNATURE: IntegrityError, HIDDEN: IntegrityError, MISSING: StorageError,
                  GTO: Conflict, **PROBLEM_ERRORS}
SEVERITY = (MOVED, HIDDEN, SIGNATURE, MISMATCH, UNUSABLE, MISSING, INCOMPLETE, GTO)  # the worst first: it decides the exit code


@dataclass
class Finding:
    tag: str
    kind: FindingKind
    message: str


@dataclass
class CheckReport:
    checked: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def error(self) -> TetherError | None:
        """The exception for the worst finding (None when there is none)."""
        if not self.findings:
            return None
        kinds = {f.kind for f in self.findings}
        worst = next(k for k in SEVERITY if k in kinds)
        return FINDING_ERRORS[worst](f"check failed: {len(self.findings)} problem(s)", hint="see the findings above")

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "skipped": self.skipped,
            "findings": [f.__dict__ for f in self.findings],
        }


def check_repository(ws: Workspace, model: str | None, offline: bool = False,
                     since: str | None = None) -> CheckReport:
    """`tether check`: every release of `model` (or of every model) held to check_releases'
    rules, signatures and environment chains included, and, unless `offline`, every output `dvc
    pull` needs at each release's commit held to the DVC remote. With `since` (a version, or a
    tag), releases below it are not checked: the report lists them as skipped."""
    reg = Registry(ws)
    models = [ws.model(model)] if model else sorted(ws.models)
    rels = [r for m in models for r in reg.of(m)]
    skipped: list[str] = []
    if since:
        floor = Version.parse(since.rpartition("@v")[2] if "@v" in since else since)
        skipped = [r.tag for r in rels if r.version < floor]
        rels = [r for r in rels if not r.version < floor]
    store = None if offline else DvcStore(ws.root)
    report = check_releases(reg, rels, store, signatures=True, chains=True, skipped=skipped)
    if store is not None:  # every output `dvc pull` needs at each release's commit (publish.py)
        shown = {(f.tag, f.kind) for f in report.findings}
        report.findings += [f for f in pullable_findings(reg, rels, store) if (f.tag, f.kind) not in shown]
    return report


def check_releases(reg: Registry, releases: list[Release], store: DvcStore | None, remote: bool = True,
                   signatures: bool = False, chains: bool = False, skipped: list[str] | None = None) -> CheckReport:
    """Holds every tag, however it was made, to the rules `tether release` applies: the five
    parts derived from its commit, an attestation (if any) that agrees with the commit, and every
    DVC object on the remote. A malformed tag is one finding, never a crash. `skipped`: the
    releases the caller left out (reported as such)."""
    report = CheckReport(skipped=skipped if skipped is not None else [])
    if remote and store is not None:
        releases = reg.resolve_objects(releases, store)
    complete = []
    for rel in releases:
        report.checked.append(rel.tag)
        finding, whole = _release_finding(rel)
        if finding is not None:
            report.findings.append(finding)
        if whole:
            complete.append(rel)
    if remote and complete and store is not None:
        report.findings += missing_object_findings(complete, store)
    report.findings += moved_tag_findings(reg, releases)
    if chains:
        for model in sorted({r.name.model for r in releases}):
            for env in reg.ws.environments(model):
                if found := hidden_moves(reg, model, env):
                    report.findings.append(Finding(env, HIDDEN, found))
    if signatures:
        from tether.registry import signing

        report.findings += [Finding(where, SIGNATURE, why) for where, why in signing.findings(reg.ws, reg, releases)]
        from tether.registry import attested

        report.findings += [Finding(where, SIGNATURE, why) for where, why in attested.findings(reg, releases)]
    # after the others: GTO's view and release-named tags that are no release (issue 26 items 5, 6, 13)
    report.findings += not_release_findings(reg) + unread_findings(reg)
    report.findings += gto_findings(reg, sorted({r.name.model for r in releases}))
    return report


def _release_finding(rel: Release) -> tuple[Finding | None, bool]:
    """The finding on the release's own verdict (None: none), and whether its DVC objects are
    then held to the remote (it has a manifest, complete or only incomplete)."""
    finding = None
    try:
        kind, problem = rel.problem_kind, rel.problem or ""
    except Exception as exc:  # noqa: BLE001 - one bad tag must not take the registry down
        kind, problem = "unusable", f"cannot be read: {exc}"
    if kind == "mismatch":
        finding = Finding(rel.tag, MISMATCH, problem)
    elif kind == "unusable":
        finding = Finding(rel.tag, UNUSABLE, problem)
    elif kind is not None:
        fixes = "; ".join(f"{p}: {rel.fixes[p]}" for p in rel.missing_parts if p in rel.fixes)
        finding = Finding(rel.tag, INCOMPLETE, problem + (f" (to fix: {fixes})" if fixes else ""))
    return finding, rel.manifest is not None and kind in (None, "incomplete")


def missing_object_findings(complete: list[Release], store: DvcStore) -> list[Finding]:
    """One finding per release whose manifest's DVC objects are not all on the remote."""
    wanted: dict[str, list[str]] = {}
    for rel in complete:
        for e in mf.dvc_objects(rel.manifest or {}):
            wanted.setdefault(e["md5"], []).append(f"{rel.tag}:{e['path']}")
    missing = store.missing_on_remote(wanted)
    per_tag: dict[str, list[str]] = {}
    for md5 in missing:
        for where in wanted[md5]:
            tag, _, path = where.partition(":")
            per_tag.setdefault(tag, []).append(path)
    return [Finding(tag, MISSING, "not on the DVC remote: " + ", ".join(sorted(paths)))
            for tag, paths in sorted(per_tag.items())]


def moved_tag_findings(reg: Registry, releases: list[Release]) -> list[Finding]:
    """One finding per move tether recorded whose release tag is gone or now names another
    tag object (moved or re-created after it went live)."""
    out = []
    for model in {r.name.model for r in releases}:
        for env in reg.ws.environments(model):
            for ev in reg.history(model, env):
                if ev.source != "tether":
                    continue
                moved = reg.by_tag(ev.release)
                if moved is None or (ev.tag_object and moved.tag_object != ev.tag_object):
                    out.append(Finding(ev.release, MOVED,
                        f"moved or re-created after it went to {env} (recorded tag object {ev.tag_object[:12]})"))
    return out


def hidden_moves(reg: Registry, model: str, env: str) -> str | None:
    """Why the environment's first-parent chain (what `history` reads) does not hold every tether
    move its branch reaches: a commit on the chain with a parent beside it other than its
    release's commit, whose own first-parent line holds moves (a history rewritten by a merge
    before the pre-receive hook guarded it). None when the chain holds them all. One `git log`
    of the chain; one more per such parent (none in a history tether wrote)."""
    from tether.core.moves import ACTIONS

    head = reg.env_state(model, env).commit
    if head is None:
        return None
    git = reg.ws.git
    entries = git.first_parent_entries(head, [])  # parents and trailers, no message bodies
    oldest = max((i for i, e in enumerate(entries) if e.trailers.get(moves.ACTION) in ACTIONS), default=-1)
    entries = entries[: oldest + 1]
    chain = {e.commit for e in entries}
    side: dict[str, str] = {}
    for e in entries:
        rel = reg.by_tag(e.trailers.get(moves.RELEASE, ""))
        for parent in e.parents[1:]:
            if parent not in chain and not (rel is not None and parent == rel.commit):
                side.setdefault(parent, e.commit)
    if not side:
        return None
    hidden: list[str] = []
    merges: set[str] = set()
    for parent, merged_at in side.items():  # each parent's own line, down to the chain below its merge
        below = next(e.parents[0] for e in entries if e.commit == merged_at)
        out = git.run("log", "--first-parent", "--format=%H%x00%(trailers:key=Tether-Action,valueonly)%x00",
                      parent, f"^{below}", "--").stdout.split("\0")
        found = [out[i].strip() for i in range(0, len(out) - 1, 2) if out[i + 1].strip() in ACTIONS]
        hidden += found
        merges.update([merged_at[:12]] if found else [])
    if not hidden:
        return None
    return (f"{len(hidden)} move(s) ({', '.join(h[:12] for h in hidden[:5])}{', …' if len(hidden) > 5 else ''}) "
            f"are reachable from {env} but not on its first-parent chain, so `history` does not show them: "
            f"commit {', '.join(sorted(merges))} merged them beside it (history rewritten; restore the branch from a "
            "clone that still has it, and install `tether hook` so the server refuses such pushes)")


def pullable_findings(reg: Registry, releases: list[Release], store: DvcStore) -> list[Finding]:
    """`git checkout TAG && dvc pull` must work on a fresh clone: every cached output of each
    release's commit (an evaluation's directory, plots, a cached metrics file: not only the
    tuple, which `check_releases` holds to the remote already) must be on the DVC remote."""
    from tether.adapters import publish
    from tether.adapters.gitrepo import cat_files

    git = reg.ws.git
    commits = sorted({r.commit for r in releases})
    if not commits:
        return []
    dvc_files = {c: [p for p in git.files_at(c) if p.endswith(".dvc")] for c in commits}
    specs = [f"{c}:{name}" for c in commits for name in ("dvc.lock", "dvc.yaml", *dvc_files[c])]
    blobs = cat_files(git, specs)
    per_commit = {c: publish.outputs_in_blobs(blobs.get(f"{c}:dvc.lock"), blobs.get(f"{c}:dvc.yaml"),
                                              {p: blobs.get(f"{c}:{p}") for p in dvc_files[c]}) for c in commits}
    wanted = set().union(*(set(m) for m in per_commit.values()))
    missing = store.missing_on_remote(wanted)
    out = []
    for rel in releases:
        paths = sorted({p for m, p in per_commit[rel.commit].items() if m in missing})
        if paths:
            out.append(Finding(rel.tag, MISSING, "its commit is not pullable (`git checkout "
                               f"{rel.tag} && dvc pull` fails): not on the DVC remote: {', '.join(paths)}"))
    return out


def gto_findings(reg: Registry, models: list[str]) -> list[Finding]:
    """One finding per environment whose GTO tags disagree with its branch (the branch decides
    what every command uses; see Registry.gto_disagreement and docs/registry.md)."""
    out = []
    for model in models:
        for env in reg.ws.environments(model):
            d = reg.gto_disagreement(model, env)
            if d is None:
                continue
            said = d["problem"] or (f"puts {d['gto']} in {env}" if d["gto"] else f"leaves {env} empty")
            out.append(Finding(d["tag"], GTO, f"GTO's tags disagree with branch {reg.env_state(model, env).branch}: "
                                              f"{said}, the branch runs {d['branch'] or 'no release'} (the branch "
                                              f"decides; make them agree with tether promote or gto assign)"))
    return out


def not_release_findings(reg: Registry) -> list[Finding]:
    """One finding per release-named tag on a blob, a tree or another tag (`git tag m@v9.9.9
    <blob>`): never a release, never a crash (see Registry.not_releases)."""
    return [Finding(tag, UNUSABLE, why + "; delete it (git tag -d " + tag + ") or point it at a release commit")
            for tag, why in sorted(reg.not_releases.items())]


def unread_findings(reg: Registry) -> list[Finding]:
    """Release tags no dvc.yaml explains (neither HEAD's, which declares no model, nor their
    commits'): `check` never passes on releases it could not read."""
    if reg.ws.models and not reg.adopted:
        return []  # HEAD's dvc.yaml names the models; other `name@vX.Y.Z` tags are not tether's
    return [Finding(r.tag, UNUSABLE, f"cannot be read: HEAD's dvc.yaml declares no model and its commit does not "
                                     f"declare {r.name.model}")
            for model, rels in sorted(reg.releases.items()) if model not in reg.ws.models for r in rels]
