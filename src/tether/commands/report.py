"""`tether report`: the registry at a glance, as one static HTML file (reporthtml.py renders it).

Everything comes from git through the registry, as `list`, `show`, `history` and `diff` read it:
per model its releases (oldest first) with their five parts and metrics, each environment's
moves, and what changed between consecutive releases. The file is written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tether.core import manifest as mf
from tether.commands import report_html
from tether.errors import UsageError
from tether.registry.registry import Registry
from tether.adapters.workspace import Workspace


@dataclass
class ModelReport:
    model: str
    releases: list[dict] = field(default_factory=list)  # oldest first: tag, stage, manifest | problem
    environments: dict[str, list[dict]] = field(default_factory=dict)  # env -> events, oldest first
    diffs: list[mf.ManifestDiff] = field(default_factory=list)  # manifest.diff of each consecutive pair


@dataclass(frozen=True)
class Written:
    path: Path
    models: int
    releases: int
    events: int

    def as_dict(self) -> dict:
        return {"path": str(self.path), "models": self.models, "releases": self.releases, "events": self.events}


def gather(ws: Workspace, model: str | None = None) -> list[ModelReport]:
    reg = Registry(ws, messages=False, cached=True)
    models = [ws.model(model)] if model else sorted(ws.models)
    out = []
    for name in models:
        rep = ModelReport(name)
        for rel in reversed(reg.of(name)):  # the registry lists newest first
            usable = rel.manifest is not None and rel.problem_kind not in ("mismatch", "unusable")
            rep.releases.append({"tag": rel.tag, "version": str(rel.version), "commit": rel.commit,
                                 "created_at": rel.created_at, "released_by": rel.creator, "stage": reg.stage(rel),
                                 "manifest": rel.manifest if usable else None, "problem": rel.problem})
        for env in ws.environments(name):
            events = reg.history(name, env)
            rep.environments[env] = [dict(ev.__dict__) for ev in reversed(events)]
        usable_ms = [r["manifest"] for r in rep.releases if r["manifest"] is not None]
        rep.diffs = [mf.diff(a, b) for a, b in zip(usable_ms, usable_ms[1:])]
        out.append(rep)
    return out


def write_report(ws: Workspace, output: str | Path, model: str | None = None, title: str | None = None) -> Written:
    target = Path(output)
    if target.exists() and target.is_dir():
        raise UsageError(f"{target} is a directory", hint="give a file name, e.g. -o registry.html")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} does not exist", hint="create the directory first, or write elsewhere")
    reports = gather(ws, model)
    head = ws.git.rev_parse("HEAD")
    text = report_html.render(reports, title or f"tether registry: {ws.root.name}", head)
    tmp = target.with_name(f".{target.name}.tether-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return Written(target, len(reports), sum(len(r.releases) for r in reports),
                   sum(len(evs) for r in reports for evs in r.environments.values()))
