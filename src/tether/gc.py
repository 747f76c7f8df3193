"""`tether gc`: garbage-collect the DVC cache (and, with --cloud, the remote) without ever
removing what a release still needs.

`dvc gc -w` keeps only what the workspace needs and would delete the objects of the release
production rolled back from an hour ago. Here the keep-set comes from every place a team's
state can live: local environment branches, origin's remote-tracking branches (a fresh clone has
only those), GTO assignment tags, and every commit on those histories, including commits made
outside tether (their dvc.lock is what `git checkout production && dvc pull` needs). Every output
of a protected commit is kept, not only the tuple, plus the newest N releases of each model and
the workspace's own dvc.lock. Everything else may go.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether import dvcgraph
from tether.dvcstore import DvcStore
from tether.errors import StorageError, TetherError
from tether.gitrepo import cat_files
from tether.registry import Registry
from tether.workspace import Workspace, load_yaml


@dataclass
class GcPlan:
    protected: list[str]  # release tags
    protected_commits: list[str]  # every commit whose outputs are kept
    keep: set[str]
    by_release: dict[str, list[str]] = field(default_factory=dict)  # deletions per release that used them
    cache_delete: list[str] = field(default_factory=list)
    remote_delete: list[str] = field(default_factory=list)
    fetched: bool = False

    def as_dict(self) -> dict:
        return {"protected_releases": self.protected, "protected_commits": len(self.protected_commits),
                "kept_objects": len(self.keep), "fetched_remote_state": self.fetched,
                "cache_delete": self.cache_delete, "remote_delete": self.remote_delete,
                "delete_by_release": self.by_release}


def refresh_remote_state(ws: Workspace) -> None:
    """Before deleting anything from the shared remote, learn what the team has live: origin's
    branches and tags. Not being able to is a reason to delete nothing."""
    if not ws.git.remote_url("origin"):
        raise StorageError("gc --cloud needs the git remote (origin) to learn what is live before deleting",
                           hint="add it (git remote add origin URL); nothing was deleted")
    try:
        ws.git.fetch("origin", "+refs/heads/*:refs/remotes/origin/*", "refs/tags/*:refs/tags/*")
    except TetherError as exc:
        raise StorageError(f"cannot read the environments on origin: {exc.message}",
                           hint="gc --cloud deletes nothing unless it knows every live release; "
                                "fix the git remote and try again") from None


def env_refs(ws: Workspace, reg: Registry) -> list[str]:
    """Every branch, local or origin's, that is or may be an environment of any model, under
    either naming (`<env>` and `<model>/<env>`): gc must not depend on which one owns a name."""
    names = set()
    for model in ws.models:
        for env in ws.environments(model):
            names |= {env, f"{model}/{env}"}
            try:
                names.add(ws.branch(model, env))
            except TetherError:
                pass
    out = []
    for n in sorted(names):
        for heads in (reg.heads, reg.remote_heads):
            if n in heads:
                out.append(heads[n].commit)
    return out


def protected_commits(ws: Workspace, reg: Registry, newest: int) -> tuple[dict, set[str]]:
    """({tag: Release}, {commit}) of everything that is, was or may again be live."""
    releases: dict = {}
    commits: set[str] = set()
    for model in ws.models:
        for head in env_refs(ws, reg):
            for ev in reg.events_at("", head, model):
                commits.add(ev.commit)
                rel = reg.by_tag(ev.release) if ev.release else None
                if rel is not None:
                    releases[rel.tag] = rel
                # a tether move names its release even if the tag is gone or moved
                for name in (ev.release, ev.trailers.get("Tether-Previous")):
                    if name and (r := reg.by_tag(name)):
                        releases[r.tag] = r
        for rel in reg.of(model)[:newest]:
            releases[rel.tag] = rel
    # GTO's assignment tags (model#stage#N) point at the commit they put in a stage: every
    # commit any of them ever named may be live for a GTO user.
    from tether import gto

    for name, rec in reg.tag_records.items():
        t = gto.parse_gto_tag(name)
        if t is not None and t.model in ws.models and t.action == "assign":
            commits.add(rec.commit)
            for r in reg.of(t.model):
                if r.commit == rec.commit:
                    releases[r.tag] = r
    commits |= {r.commit for r in releases.values()}
    return releases, commits


def _lock_md5s(ws: Workspace, commits: set[str], outs_only: bool = False) -> dict[str, set[str]]:
    """{commit: every md5 its dvc.lock and *.dvc files name}: outputs and deps alike (or only
    outputs: a dep may be a git-tracked directory whose listing DVC never stored)."""
    specs = [f"{c}:dvc.lock" for c in sorted(commits)]
    blobs = cat_files(ws.git, specs)
    out: dict[str, set[str]] = {}
    for c in sorted(commits):
        md5s: set[str] = set()
        raw = blobs.get(f"{c}:dvc.lock")
        if raw is not None:
            try:
                lock = load_yaml(raw.decode())
                md5s |= {o.md5 for st in dvcgraph.lock_stages(lock).values()
                         for o in (st.outs if outs_only else (*st.outs, *st.deps)) if o.md5}
            except Exception:  # an unreadable lock protects nothing more, but must not stop gc
                pass
        out[c] = md5s
    dvc_files = {c: [p for p in ws.git.files_at(c) if p.endswith(".dvc")] for c in sorted(commits)}
    specs = [f"{c}:{p}" for c, paths in dvc_files.items() for p in paths]
    for spec, raw in cat_files(ws.git, specs).items():
        if raw is None:
            continue
        try:
            data = load_yaml(raw.decode())
        except Exception:
            continue
        for o in (data.get("outs") or []) if isinstance(data, dict) else []:
            if isinstance(o, dict) and isinstance(o.get("md5"), str):
                out[spec.split(":", 1)[0]].add(o["md5"])
    return out


def _listing(store: DvcStore, md5: str, remote, strict: bool) -> list[dict]:
    """A directory's files, from the cache or else the remote. Unknown is not empty: if neither
    has the listing of an output, we cannot tell which files to keep, so nothing is deleted. (A
    directory dep kept in git, such as conf/, has a listing DVC never stored.)"""
    found = store._local_listing(md5)
    if found is None and remote is not None:
        found = store._remote_listing(remote, md5)
    if found is None:
        if remote is None or not strict:
            return []  # cache-only gc: files listed nowhere locally are not in the cache either
        raise StorageError(f"the listing of directory object {md5} is on neither the cache nor the remote",
                           hint="gc cannot tell which files a protected release needs; nothing was deleted")
    return found


def plan_gc(ws: Workspace, *, newest: int = 3, cloud: bool = False, store: DvcStore | None = None) -> GcPlan:
    store = store or DvcStore(ws.root)
    fetched = False
    if cloud:
        refresh_remote_state(ws)
        fetched = True
    reg = Registry(ws, messages=False)
    releases, commits = protected_commits(ws, reg, newest)
    per_commit = _lock_md5s(ws, commits | {ws.git.head()})
    keep = set().union(*per_commit.values()) if per_commit else set()
    keep |= {o.md5 for st in dvcgraph.lock_stages(ws.dvc_lock()).values() for o in (*st.outs, *st.deps) if o.md5}
    remote = store.remote() if cloud else None
    outs = set().union(*_lock_md5s(ws, commits | {ws.git.head()}, outs_only=True).values())
    for md5 in sorted(m for m in keep if m.endswith(".dir")):  # a directory object keeps its files
        keep |= {c["md5"] for c in _listing(store, md5, remote, strict=md5 in outs)}
    plan = GcPlan(protected=sorted(releases), protected_commits=sorted(commits), keep=keep, fetched=fetched)
    plan.cache_delete = sorted(set(store.cache.all()) - keep)
    if remote is not None:
        plan.remote_delete = sorted(set(remote.all()) - keep)
    # which release used what we delete: a dry run that says "v0.3.0's weights" is reviewable
    doomed = set(plan.cache_delete) | set(plan.remote_delete)
    if doomed:
        others = {r.commit: r.tag for m in ws.models for r in reg.of(m) if r.tag not in releases}
        for c, md5s in _lock_md5s(ws, set(others)).items():
            hit = sorted(md5s & doomed)
            if hit:
                plan.by_release[others[c]] = hit
    return plan


def execute_gc(ws: Workspace, plan: GcPlan, store: DvcStore | None = None) -> None:
    store = store or DvcStore(ws.root)
    for oid in plan.cache_delete:
        store.cache.delete(oid)
    if plan.remote_delete:
        remote = store.remote()
        for oid in plan.remote_delete:
            remote.delete(oid)
