"""`tether gc`: garbage-collect the DVC cache (and, with --cloud, the remote) without ever
removing what a release still needs.

`dvc gc -w` keeps only what the workspace needs and would delete the objects of the release
production rolled back from an hour ago. Here the keep-set comes from the registry: every
release in any environment's history, the newest N other releases of each model, and the
workspace's own dvc.lock. Everything else may go.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import dvcgraph
from tether.dvcstore import DvcStore
from tether.manifest import dvc_objects
from tether.registry import Registry
from tether.workspace import Workspace


@dataclass
class GcPlan:
    protected: list[str]
    keep: set[str]
    cache_delete: list[str] = field(default_factory=list)
    remote_delete: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"protected_releases": self.protected, "kept_objects": len(self.keep),
                "cache_delete": self.cache_delete, "remote_delete": self.remote_delete}


def protected_releases(ws: Workspace, reg: Registry, newest: int) -> list:
    out = {}
    for model in ws.models:
        for env in ws.settings(model).environments:
            for ev in reg.history(model, env):
                rel = reg.by_tag(ev.release)
                if rel is not None:
                    out[rel.tag] = rel
        for rel in [r for r in reg.of(model) if r.manifest][:newest]:
            out[rel.tag] = rel
    return list(out.values())


def plan_gc(ws: Workspace, *, newest: int = 3, cloud: bool = False, store: DvcStore | None = None) -> GcPlan:
    store = store or DvcStore(ws.root)
    reg = Registry(ws)
    releases = protected_releases(ws, reg, newest)
    keep = {e["md5"] for rel in releases for e in dvc_objects(rel.manifest)}
    keep |= {o.md5 for st in dvcgraph.lock_stages(ws.dvc_lock()).values() for o in (*st.outs, *st.deps) if o.md5}
    for md5 in list(keep):  # a directory object keeps its files
        if md5.endswith(".dir") and store.cache_path(md5).exists():
            from tether.materialise import dir_listing

            keep |= {c["md5"] for c in dir_listing(store, md5)}
    plan = GcPlan(protected=sorted(r.tag for r in releases), keep=keep)
    plan.cache_delete = sorted(set(store.cache.all()) - keep)
    if cloud:
        plan.remote_delete = sorted(set(store.remote().all()) - keep)
    return plan


def execute_gc(ws: Workspace, plan: GcPlan, store: DvcStore | None = None) -> None:
    store = store or DvcStore(ws.root)
    for oid in plan.cache_delete:
        store.cache.delete(oid)
    if plan.remote_delete:
        remote = store.remote()
        for oid in plan.remote_delete:
            remote.delete(oid)
