"""`tether check` (for CI) and the per-release part of the promote gate: every release tag is
complete, its manifest matches its tree, and every object it needs is on the DVC remote."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import dvcgraph
from tether import manifest as mf
from tether.dvcstore import DvcStore
from tether.gitrepo import cat_files, object_ids
from tether.registry import Registry, Release
from tether.workspace import load_yaml

# How bad each finding is; the worst decides the exit code.
INCOMPLETE, MISMATCH, MISSING, MOVED = "incomplete", "mismatch", "missing-objects", "moved-tag"


@dataclass
class Finding:
    tag: str
    kind: str
    message: str


@dataclass
class CheckReport:
    checked: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "findings": [f.__dict__ for f in self.findings],
        }


def check_releases(reg: Registry, releases: list[Release], store: DvcStore | None, remote: bool = True) -> CheckReport:
    report = CheckReport()
    git = reg.ws.git
    complete = []
    for rel in releases:
        report.checked.append(rel.tag)
        if rel.problem:
            report.findings.append(Finding(rel.tag, INCOMPLETE, rel.problem))
        else:
            complete.append(rel)

    # Everything below reads the commits' files in two batched git processes, not one per tag.
    lock_specs = [f"{r.commit}:{name}" for r in complete for name in ("dvc.yaml", "dvc.lock")]
    blobs = cat_files(git, lock_specs)
    code_specs = [f"{r.commit}:{c['path']}" for r in complete for c in r.manifest["components"]["code"]]
    ids = object_ids(git, code_specs)
    for rel in complete:
        m = rel.manifest
        problems = []
        if m["tree"] != rel.tree:
            problems.append(f"its tree is {rel.tree[:12]}, the manifest records {m['tree'][:12]}")
        y, lk = blobs.get(f"{rel.commit}:dvc.yaml"), blobs.get(f"{rel.commit}:dvc.lock")
        if y is None or lk is None:
            problems.append("its commit has no dvc.yaml/dvc.lock")
        else:
            try:
                graph = dvcgraph.model_graph(load_yaml(y.decode()), load_yaml(lk.decode()), rel.name.model)
                for comp, entries in (("weights", graph.weights), ("data", graph.data)):
                    have = {e.path: e.md5 for e in entries}
                    said = {e["path"]: e["md5"] for e in m["components"][comp]}
                    if have != said:
                        diff = sorted(set(have.items()) ^ set(said.items()))
                        problems.append(f"{comp} in dvc.lock differ from the manifest ({', '.join(p for p, _ in diff[:3])})")
            except Exception as exc:  # a broken dvc.yaml at that commit
                problems.append(f"cannot read its pipeline: {exc}")
        for c in m["components"]["code"]:
            if ids.get(f"{rel.commit}:{c['path']}") != c.get("git_id"):
                problems.append(f"code {c['path']} differs from the manifest")
        if problems:
            report.findings.append(Finding(rel.tag, MISMATCH, "; ".join(problems)))

    if remote and complete and store is not None:
        wanted: dict[str, list[str]] = {}
        for rel in complete:
            for e in mf.dvc_objects(rel.manifest):
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
        for env in reg.ws.settings(model).environments:
            for ev in reg.history(model, env):
                rel = reg.by_tag(ev.release)
                if rel is None or (ev.tag_object and rel.tag_object != ev.tag_object):
                    report.findings.append(Finding(ev.release, MOVED,
                        f"moved or re-created after it went to {env} (recorded tag object {ev.tag_object[:12]})"))
    return report
