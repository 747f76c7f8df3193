"""`tether check` (for CI) and the per-release part of the promote gate: every release tag is
complete, its manifest matches its tree, and every object it needs is on the DVC remote."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from tether import manifest as mf
from tether.dvcstore import DvcStore
from tether.errors import IntegrityError, StorageError, TetherError
from tether.registry import PROBLEM_ERRORS, Registry, Release

# The kinds of finding, and the one mapping from a finding to its exception (and so its exit
# code), used by `check`, the promote gate and every command that meets an unusable release.
FindingKind = Literal["incomplete", "mismatch", "unusable", "missing-objects", "moved-tag", "signature"]
INCOMPLETE: Final = "incomplete"
MISMATCH: Final = "mismatch"
UNUSABLE: Final = "unusable"
MISSING: Final = "missing-objects"
MOVED: Final = "moved-tag"
SIGNATURE: Final = "signature"  # the signing policy rejects a release tag or an environment move
FINDING_ERRORS = {MOVED: IntegrityError, SIGNATURE: IntegrityError, MISSING: StorageError, **PROBLEM_ERRORS}
SEVERITY = (MOVED, SIGNATURE, MISMATCH, UNUSABLE, MISSING, INCOMPLETE)  # the worst first: it decides the exit code


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


def check_releases(reg: Registry, releases: list[Release], store: DvcStore | None, remote: bool = True,
                   signatures: bool = False) -> CheckReport:
    """Holds every tag, however it was made, to the rules `tether release` applies: the five
    parts derived from its commit, an attestation (if any) that agrees with the commit, and every
    DVC object on the remote. A malformed tag is one finding, never a crash."""
    report = CheckReport()
    if remote and store is not None:
        releases = reg.resolve_objects(releases, store)
    complete = []
    for rel in releases:
        report.checked.append(rel.tag)
        try:
            kind, problem = rel.problem_kind, rel.problem or ""
        except Exception as exc:  # noqa: BLE001 - one bad tag must not take the registry down
            kind, problem = "unusable", f"cannot be read: {exc}"
        if kind == "mismatch":
            report.findings.append(Finding(rel.tag, MISMATCH, problem))
        elif kind == "unusable":
            report.findings.append(Finding(rel.tag, UNUSABLE, problem))
        elif kind is not None:
            fixes = "; ".join(f"{p}: {rel.fixes[p]}" for p in rel.missing_parts if p in rel.fixes)
            report.findings.append(Finding(rel.tag, INCOMPLETE, problem + (f" (to fix: {fixes})" if fixes else "")))
        if rel.manifest is not None and kind in (None, "incomplete"):
            complete.append(rel)

    if remote and complete and store is not None:
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
        for tag, paths in sorted(per_tag.items()):
            report.findings.append(Finding(tag, MISSING, "not on the DVC remote: " + ", ".join(sorted(paths))))

    for model in {r.name.model for r in releases}:
        for env in reg.ws.environments(model):
            for ev in reg.history(model, env):
                if ev.source != "tether":
                    continue
                moved = reg.by_tag(ev.release)
                if moved is None or (ev.tag_object and moved.tag_object != ev.tag_object):
                    report.findings.append(Finding(ev.release, MOVED,
                        f"moved or re-created after it went to {env} (recorded tag object {ev.tag_object[:12]})"))
    if signatures:
        from tether import signing

        report.findings += [Finding(where, SIGNATURE, why) for where, why in signing.findings(reg.ws, reg, releases)]
    return report


def pullable_findings(reg: Registry, releases: list[Release], store: DvcStore) -> list[Finding]:
    """`git checkout TAG && dvc pull` must work on a fresh clone: every cached output of each
    release's commit (an evaluation's directory, plots, a cached metrics file: not only the
    tuple, which `check_releases` holds to the remote already) must be on the DVC remote."""
    from tether import publish
    from tether.gitrepo import cat_files

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
