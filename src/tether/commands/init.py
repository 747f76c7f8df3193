"""`tether init`: declare the pipeline's model in dvc.yaml, say what a release of it will be made
of (threshold, metrics, data) and what is missing, and what `tether release --dry-run` makes of it.

The proposal comes from tether.core.initscan; the edit is tether.core.yamledit's (one new block,
every other line as the user wrote it); the facts are the release's own (release_facts.gather)
and the release preview is `plan_release` itself, so init never guesses differently from release.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.adapters.workspace import Workspace
from tether.commands import release_facts
from tether.core import dvcgraph, initscan
from tether.core.settings import load_yaml
from tether.errors import Conflict, NotFound, TetherError, UsageError


@dataclass
class InitPlan:
    declared: dict[str, str]  # {name: path} dvc.yaml declares already
    proposal: list[initscan.Candidate]  # what init would add
    text: str | None = None  # dvc.yaml with the proposal added (None: nothing to add)
    dirty: bool = False  # dvc.yaml has uncommitted changes
    written: bool = False
    facts: dict[str, list[str]] = field(default_factory=dict)  # model -> lines about its parts
    release: dict[str, dict] = field(default_factory=dict)  # model -> what release --dry-run says

    def as_dict(self) -> dict:
        return {"declared": self.declared, "proposal": [c.as_dict() for c in self.proposal],
                "written": self.written, "dvc_yaml_committed": not (self.dirty or self.written), "changed": bool(self.proposal), "facts": self.facts,
                "release": self.release}


def plan_init(ws: Workspace, path: str | None = None, name: str | None = None) -> InitPlan:
    """What init would add to dvc.yaml. Refuses (changing nothing) a dvc.yaml with uncommitted
    changes, or one it cannot edit line by line."""
    text = ws.dvc_yaml_text
    doc = ws.dvc_yaml
    declared = initscan.declared(doc)
    if path:
        p = dvcgraph.norm(path)
        if p in declared.values():
            proposal = []
        else:
            proposal = [initscan.Candidate(name or initscan.model_name(p), p, "given with --path")]
    else:
        proposal = initscan.candidates(doc) if not declared else []
        if name and len(proposal) == 1:
            proposal = [initscan.Candidate(name, proposal[0].path, proposal[0].found)]
    for c in proposal:
        if c.name in declared:
            raise UsageError(f"dvc.yaml already declares a model named {c.name}", hint="pass --name NAME")
    plan = InitPlan(declared, proposal, dirty=_dirty(ws))
    if proposal and plan.dirty:
        raise Conflict("dvc.yaml has uncommitted changes; tether init changed nothing",
                       hint="commit or discard your changes to dvc.yaml, then run tether init again")
    if proposal:
        plan.text = initscan.add_artifacts(text, proposal)
    if not proposal and not declared:
        raise NotFound("no stage output of dvc.yaml looks like a model (a .pkl, .onnx, .pt … file, or a path "
                       "under models/)", hint="name it: tether init --path models/my-model.pkl --yes")
    return plan


def _dirty(ws: Workspace) -> bool:
    return bool(ws.git.run("status", "--porcelain", "--", "dvc.yaml").stdout.strip())


def describe(ws: Workspace, plan: InitPlan) -> None:
    """Fill plan.facts: for each model, where its threshold, metrics and data come from (with
    dvc.yaml as it is, or as init would write it)."""
    view = Workspace(ws.root, ws.git)
    if plan.text is not None:  # the proposal, read as release would read it once written
        view.dvc_yaml_text = plan.text
        view.dvc_yaml = load_yaml(plan.text)
    for model in sorted({*plan.declared, *(c.name for c in plan.proposal)}):
        try:
            plan.facts[model] = _facts(view, model)
        except TetherError as exc:
            plan.facts[model] = [f"cannot read its pipeline: {exc.message}"]


def _facts(ws: Workspace, model: str) -> list[str]:
    from tether.registry import derive

    facts = release_facts.gather(ws, model)
    graph, settings = facts.graph, ws.settings(model)
    art = graph.artifact.path
    lines = [f"weights: {', '.join(w.path for w in graph.weights) or art + ' (not produced yet: run dvc repro)'}"]
    pointer = f"{art}/{settings.threshold_file}"
    if facts.threshold is None:
        lines.append(f"threshold: MISSING: have the stage that evaluates the model write {pointer} "
                     '({"value": 0.5}), or declare `params: [evaluate.threshold]` on that stage')
    elif _json_or_none(ws.root / pointer) == facts.threshold:
        lines.append(f"threshold: {facts.threshold['value']} from {pointer}")
    else:
        lines.append(f"threshold: {facts.threshold['value']} from {facts.threshold.get('source')}")
    metric_files = derive.metric_paths(ws.dvc_yaml, graph)
    if facts.metrics:
        lines.append(f"metrics: {art}/{settings.metrics_file}")
    elif metric_files:
        lines.append(f"metrics: {', '.join(metric_files)}")
    else:
        lines.append("metrics: MISSING: declare the evaluation's output under `metrics:` of the stage that "
                     "evaluates the model (promote's regression gate compares them)")
    data = [d.path for d in graph.data]
    lines.append(f"data: {', '.join(data)}" if data else
                 "data: MISSING: no DVC-tracked data upstream; `dvc add` it and list it in the stages' deps")
    return lines


def _json_or_none(path) -> object:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def apply_init(ws: Workspace, plan: InitPlan) -> None:
    """Write the proposal into dvc.yaml (the file is re-read first: a change since the plan
    refuses)."""
    if plan.text is None:
        return
    path = ws.root / "dvc.yaml"
    if path.read_text() != ws.dvc_yaml_text:
        raise Conflict("dvc.yaml changed while tether init ran; nothing was written")
    path.write_text(plan.text)
    plan.written = True


def preview_release(ws: Workspace, plan: InitPlan) -> None:
    """What `tether release --dry-run` says for each declared model (its own planning code),
    once dvc.yaml's declaration is committed."""
    from tether.commands.release import plan_release

    if plan.proposal or plan.dirty:
        return  # the declaration is not committed yet: release derives the model from the commit
    for model in sorted(plan.declared):
        fresh = Workspace(ws.root, ws.git)
        try:
            rp = plan_release(fresh, model)
        except TetherError as exc:
            checked = getattr(exc, "gates", None) or []
            plan.release[model] = {"ok": False, "error": exc.message, "hint": exc.hint,
                                   "gates": [g.as_dict() for g in checked]}
            continue
        plan.release[model] = {"ok": True, "tag": rp.tag, "bump": rp.bump, "reasons": rp.reasons,
                               "gates": [g.as_dict() for g in rp.gates], "steps": rp.steps}
