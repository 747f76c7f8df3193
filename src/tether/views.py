"""What the read commands show, gathered from the registry: `list` rows and `status` per model.
The CLI only renders these (a table, or `--json`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.registry import EnvState, Registry
from tether.workspace import Workspace


@dataclass
class ReleaseRow:
    model: str
    version: str
    tag: str
    stage: str
    created_at: str
    commit: str
    complete: bool
    problem: str | None
    kind: str | None
    metrics: dict | None

    def as_dict(self) -> dict:  # by hand: dataclasses.asdict deep-copies, 3x the cost of a whole `list`
        return {"model": self.model, "version": self.version, "tag": self.tag, "stage": self.stage,
                "created_at": self.created_at, "commit": self.commit, "complete": self.complete,
                "problem": self.problem, "kind": self.kind, "metrics": self.metrics}


@dataclass
class EnvView:
    release: str | None  # the release it runs; None when empty or at a commit that is no release
    outside_commit: str | None  # the head, when it was committed outside tether and is no release
    state: EnvState


@dataclass
class ModelStatus:
    model: str
    latest: str | None
    environments: dict[str, EnvView] = field(default_factory=dict)
    head: str = ""
    dirty: bool = False
    matches: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"model": self.model, "latest": self.latest,
                "environments": {e: v.release for e, v in self.environments.items()},
                "refs": {e: v.state.as_dict() for e, v in self.environments.items()},
                "workspace": {"commit": self.head, "dirty": self.dirty, "matches": self.matches}}


def release_rows(ws: Workspace, model: str | None) -> list[ReleaseRow]:
    """Every release of the model (or of every model), newest SemVer first."""
    # Tag messages are read lazily: a warm summary cache needs none of them (Registry.summaries).
    reg = Registry(ws, messages=False)
    models = [ws.model(model)] if model else sorted(ws.models)
    if any(not reg.summary_cached(m) for m in models):
        reg = Registry(ws, messages=True)  # one pass that reads every message beats one `git cat-file` per tag
    rows = []
    for m in models:
        summary, stages = reg.summaries(m), reg.stages(m)
        for rel in reg.of(m):
            s = summary[rel.tag]
            rows.append(ReleaseRow(model=m, version=str(rel.version), tag=rel.tag, stage=stages[rel.tag],
                                   created_at=rel.created_at, commit=rel.commit, complete=s["complete"],
                                   problem=s["problem"], kind=s["kind"], metrics=s["metrics"]))
    return rows


def model_status(ws: Workspace, model: str | None) -> list[ModelStatus]:
    """Per model: the latest release, what each environment runs (and from which ref), and
    which releases the workspace's HEAD tree is."""
    reg = Registry(ws, messages=False)
    head = ws.git.head()
    tree = ws.git.tree_of(head)
    dirty = bool(ws.git.status_porcelain())
    out = []
    for m in [ws.model(model)] if model else sorted(ws.models):
        latest = reg.latest(m)
        st = ModelStatus(m, latest.tag if latest else None, head=head, dirty=dirty,
                         matches=[r.tag for r in reg.of(m) if r.tree == tree])
        for env in ws.environments(m):
            ev = reg.live(m, env)
            outside = ev.commit if ev and not ev.release else None
            st.environments[env] = EnvView(None if outside else reg.live_release(m, env), outside,
                                           reg.env_state(m, env))
        out.append(st)
    return out
