"""`tether report`: the registry at a glance, as one static HTML file (report_html renders it).

Everything comes from git through the registry, as `list`, `show`, `history` and `diff` read it:
per model its releases (oldest first) with their five parts, metrics and notes, each
environment's moves, and what changed between consecutive releases. The file is written
atomically. By default it goes under the repository's git directory (`.git/tether/report.html`),
OUTSIDE the work tree, so writing it never dirties the tree the next `tether release` checks; a
path given with -o inside the work tree is written as asked, and said to dirty the tree unless git
ignores it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tether.adapters.workspace import Workspace
from tether.clock import now_iso
from tether.commands import report_html
from tether.core import manifest as mf
from tether.errors import UsageError
from tether.registry.registry import Registry
from tether.registry.release import Release

DEFAULT_NAME = "report.html"  # under <git common dir>/tether/


@dataclass
class ModelReport:
    model: str
    releases: list[dict] = field(default_factory=list)  # oldest first: tag, stage, notes, manifest | problem
    environments: dict[str, list[dict]] = field(default_factory=dict)  # env -> events, oldest first
    diffs: list[mf.ManifestDiff] = field(default_factory=list)  # manifest.diff of each consecutive pair


@dataclass(frozen=True)
class Written:
    path: Path
    models: int
    releases: int
    events: int
    in_work_tree: bool = False  # the file is inside the work tree …
    ignored: bool = False  # … and git ignores it (so the tree stays clean)

    @property
    def url(self) -> str:
        return self.path.resolve().as_uri()

    @property
    def dirties_tree(self) -> bool:
        return self.in_work_tree and not self.ignored

    def as_dict(self) -> dict:
        return {"path": str(self.path), "url": self.url, "models": self.models, "releases": self.releases,
                "events": self.events, "dirties_tree": self.dirties_tree}


def notes_of(message: str | None, rel: Release) -> str:
    """The release notes: the text `tether release -m` put above the manifest in the tag message
    (tether.core.manifest.tag_message), or "" for none or the default summary. The registry does
    not expose it yet, so it is read here from the tag message itself."""
    if not message:
        return ""
    start = message.find("{")
    text = (message[:start] if start >= 0 else message).strip()
    defaults = (f"Release {rel.tag}", f"Release {rel.name.model} v{rel.version}")
    return "" if text in defaults else text


def _release_row(reg: Registry, rel: Release, notes: str) -> dict:
    usable = rel.manifest is not None and rel.problem_kind not in ("mismatch", "unusable")
    return {"tag": rel.tag, "version": str(rel.version), "commit": rel.commit, "created_at": rel.created_at,
            "released_by": rel.creator, "stage": reg.stage(rel), "notes": notes,
            "manifest": rel.manifest if usable else None, "problem": rel.problem}


def gather(ws: Workspace, model: str | None = None) -> list[ModelReport]:
    reg = Registry(ws, messages=False, cached=True)
    models = [ws.model(model)] if model else sorted(ws.models)
    out = []
    for name in models:
        rep = ModelReport(name)
        rels = list(reversed(reg.of(name)))  # the registry lists newest first
        messages = ws.git.tag_messages([r.tag_object for r in rels if r.annotated])
        for rel in rels:
            notes = notes_of(messages.get(rel.tag_object) if rel.annotated else None, rel)
            rep.releases.append(_release_row(reg, rel, notes))
        for env in ws.environments(name):
            events = reg.history(name, env)
            rep.environments[env] = [dict(ev.__dict__) for ev in reversed(events)]
        usable_ms = [r["manifest"] for r in rep.releases if r["manifest"] is not None]
        rep.diffs = [mf.diff(a, b) for a, b in zip(usable_ms, usable_ms[1:])]
        out.append(rep)
    return out


def default_path(ws: Workspace) -> Path:
    """Outside the work tree, beside tether's other caches in the git directory."""
    return ws.git.common_dir() / "tether" / DEFAULT_NAME


def _placement(ws: Workspace, target: Path) -> tuple[bool, bool]:
    """(inside the work tree, ignored by git)."""
    root, full = ws.root.resolve(), target.resolve()
    if root not in full.parents:
        return False, False
    if ws.git.common_dir().resolve() in full.parents or (root / ".git") in full.parents:
        return False, False  # under the git directory: not part of the tree
    res = ws.git.run("check-ignore", "-q", "--", str(full.relative_to(root)), check=False)
    return True, res.returncode == 0


def write_report(ws: Workspace, output: str | Path | None = None, model: str | None = None,
                 title: str | None = None) -> Written:
    target = Path(output) if output is not None else default_path(ws)
    if output is None:
        target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.is_dir():
        raise UsageError(f"{target} is a directory", hint="give a file name, e.g. -o registry.html")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} does not exist", hint="create the directory first, or write elsewhere")
    reports = gather(ws, model)
    head = ws.git.rev_parse("HEAD")
    text = report_html.render(reports, title or f"tether registry: {ws.root.name}", head, now_iso())
    tmp = target.with_name(f".{target.name}.tether-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    inside, ignored = _placement(ws, target)
    return Written(target, len(reports), sum(len(r.releases) for r in reports),
                   sum(len(evs) for r in reports for evs in r.environments.values()), inside, ignored)
