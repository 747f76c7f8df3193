"""`tether gc`: garbage-collect the DVC cache (and, with --cloud, the remote) without ever
removing what a release, a teammate's branch or a publication in progress still needs.

The keep-set is what git itself keeps: every object named by the dvc.lock or a `.dvc` file of
any commit that any ref reaches (origin's branches and tags, fetched first with --cloud; this
clone's branches, tags, HEAD, stash, experiments and reflogs) plus the workspace's own dvc.lock.
Beyond that, an object younger than the grace period (like git's gc.pruneExpire, two weeks by
default) is never deleted: a `release --push` in another clone uploads its objects before its
tag lands on origin, and a gc in between cannot know that tag yet. `--prune-now` drops the grace
period (after a warning). Every kept object has a reason, and the dry run counts them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from tether.core import dvcgraph
from tether.adapters.dvcstore import DvcStore, cache_objects, delete_remote, remote_objects, unreachable
from tether.errors import StorageError, TetherError, UsageError
from tether.adapters.gitrepo import cat_files
from tether.registry.registry import Registry
from tether.core.settings import load_yaml
from tether.adapters.workspace import Workspace

DEFAULT_GRACE = 14 * 86400  # git's gc.pruneExpire default, "2.weeks.ago"

# Why an object is kept, in the order a reason is assigned (the first that applies).
ORIGIN = "a branch or tag on origin reaches it"
TAG = "a tag in this clone reaches it"
LOCAL = "a branch, HEAD, stash, experiment or reflog of this clone reaches it"
WORKSPACE = "the workspace's dvc.lock names it"
YOUNG = "younger than the grace period (it may belong to a publication in progress)"
UNDATED = "the storage does not say how old it is"


def parse_grace(text: str) -> int:
    """`14d`, `36h`, `90m`, `600s`, `2w`, a bare number of seconds, or `now` (0)."""
    t = text.strip().lower()
    if t in ("now", "0"):
        return 0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", t)
    if not m:
        raise UsageError(f"cannot read the grace period {text!r}",
                         hint="give e.g. 14d, 36h, 90m, 600s or now; nothing was deleted")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
    return int(float(m.group(1)) * unit)


@dataclass
class GcPlan:
    protected: list[str]  # release tags (every one a ref reaches)
    commits: int  # how many commits' outputs are kept (every one a ref reaches)
    keep: set[str]
    grace: int = DEFAULT_GRACE
    by_release: dict[str, list[str]] = field(default_factory=dict)  # deletions per release that used them
    cache_delete: list[str] = field(default_factory=list)
    remote_delete: list[str] = field(default_factory=list)
    fetched: bool = False
    kept_cache: dict[str, int] = field(default_factory=dict)  # reason -> objects of the cache kept for it
    kept_remote: dict[str, int] = field(default_factory=dict)
    unknown_listings: list[str] = field(default_factory=list)  # kept directories whose file list is nowhere

    def as_dict(self) -> dict:
        return {"protected_releases": self.protected, "protected_commits": self.commits,
                "kept_objects": len(self.keep), "fetched_remote_state": self.fetched,
                "grace_seconds": self.grace, "kept_in_cache": self.kept_cache, "kept_on_remote": self.kept_remote,
                "unknown_listings": self.unknown_listings,
                "cache_delete": self.cache_delete, "remote_delete": self.remote_delete,
                "delete_by_release": self.by_release}


def refresh_remote_state(ws: Workspace) -> None:
    """Before deleting anything from the shared remote, learn what the team has: every branch
    and tag on origin. Not being able to is a reason to delete nothing."""
    if not ws.git.remote_url("origin"):
        raise StorageError("gc --cloud needs the git remote (origin) to learn what is live before deleting",
                           hint="add it (git remote add origin URL); nothing was deleted")
    try:
        ws.git.fetch("origin", "+refs/heads/*:refs/remotes/origin/*", "refs/tags/*:refs/tags/*")
    except TetherError as exc:
        raise StorageError(f"cannot read the branches and tags on origin: {exc.message}",
                           hint="gc --cloud deletes nothing unless it knows every branch and tag; "
                                "fix the git remote and try again") from None


def _md5s_of(raw: bytes, path: str) -> set[str]:
    """Every md5 a dvc.lock (outs and deps) or a .dvc file (outs) names; nothing if unreadable."""
    try:
        data = load_yaml(raw.decode())
    except Exception:  # noqa: BLE001 - an unreadable file protects nothing more, but must not stop gc
        return set()
    if not isinstance(data, dict):
        return set()
    if path.rpartition("/")[2] == "dvc.lock":
        try:
            return {o.md5 for st in dvcgraph.lock_stages(data).values() for o in (*st.outs, *st.deps) if o.md5}
        except Exception:  # noqa: BLE001
            return set()
    return {o["md5"] for o in data.get("outs") or [] if isinstance(o, dict) and isinstance(o.get("md5"), str)}


def _reachable(ws: Workspace, *revs: str) -> tuple[set[str], int]:
    """(md5s, commits) of every dvc.lock and .dvc file in any commit `git rev-list` reaches from
    `revs`: one rev-list and one cat-file for the whole history."""
    res = ws.git.run("rev-list", "--objects", *revs, "--", check=False)
    if res.returncode != 0:
        res = ws.git.run("rev-list", "--objects", *[r for r in revs if r != "--reflog"], "--", check=False)
    blobs: dict[str, str] = {}
    commits = 0
    for line in res.stdout.splitlines():
        oid, _, path = line.partition(" ")
        if not path:
            commits += 1  # commits carry no path; trees and blobs do
            continue
        name = path.rpartition("/")[2]
        if name == "dvc.lock" or (name.endswith(".dvc") and name != ".dvc"):
            blobs[oid] = path
    out: set[str] = set()
    for oid, raw in cat_files(ws.git, sorted(blobs)).items():
        if raw is not None:
            out |= _md5s_of(raw, blobs[oid])
    return out, commits


def plan_gc(ws: Workspace, *, newest: int = 3, cloud: bool = False, store: DvcStore | None = None,
            grace: int = DEFAULT_GRACE, now: float | None = None) -> GcPlan:
    store = store or DvcStore(ws.root)
    fetched = False
    if cloud:
        refresh_remote_state(ws)
        fetched = True
    now = time.time() if now is None else now
    reason: dict[str, str] = {}
    groups = [(ORIGIN, ["--remotes"]), (TAG, ["--tags", "--not", "--remotes"]),
              (LOCAL, ["--all", "--reflog", "HEAD", "--not", "--remotes", "--tags"])]
    commits = 0
    for why, revs in groups:
        md5s, n = _reachable(ws, *revs)
        commits += n
        for m in md5s:
            reason.setdefault(m, why)
    for o in (o for st in dvcgraph.lock_stages(ws.dvc_lock()).values() for o in (*st.outs, *st.deps)):
        if o.md5:
            reason.setdefault(o.md5, WORKSPACE)
    remote = store.remote() if cloud else None
    unknown: list[str] = []
    for md5 in sorted(m for m in list(reason) if m.endswith(".dir")):  # a directory keeps its files
        found = store.local_listing(md5)
        if found is None and remote is not None:
            try:
                found = store.remote_listing(remote, md5)
            except StorageError as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                raise unreachable(store, cause, "; nothing was deleted") from None
        if found is None:
            unknown.append(md5)  # never stored anywhere we can read: a git-tracked dep, or never pushed
            continue
        for c in found:
            reason.setdefault(c["md5"], reason[md5])
    reg = Registry(ws, messages=False)
    releases = [r for m in ws.models for r in reg.of(m)]
    kept_tags = sorted(r.tag for r in releases)
    if remote is not None and unknown:
        _refuse_unknown_release_listings(releases, set(unknown))
    plan = GcPlan(protected=kept_tags, commits=commits, keep=set(reason), fetched=fetched, grace=grace,
                  unknown_listings=unknown if remote is not None else [])

    def sort(objects: dict[str, float | None], kept: dict[str, int]) -> list[str]:
        doomed = []
        for oid, mtime in objects.items():
            why = reason.get(oid)
            if why is None:
                why = UNDATED if mtime is None else YOUNG if now - mtime < grace else None
            if why is None:
                doomed.append(oid)
            else:
                kept[why] = kept.get(why, 0) + 1
        return sorted(doomed)

    plan.cache_delete = sort(cache_objects(store), plan.kept_cache)
    if remote is not None:
        plan.remote_delete = sort(remote_objects(store, remote), plan.kept_remote)
    return plan


def _refuse_unknown_release_listings(releases: list, unknown: set[str]) -> None:
    """A release's directory output whose file list is neither in the cache nor on the remote:
    gc cannot tell which of the remote's files that release needs, so it deletes nothing (a
    workspace that still holds the directory can push it again: `dvc push`). Other unknown
    listings (a git-tracked directory dep DVC never stored) do not stop gc."""
    from tether.adapters.publish import all_md5s

    for rel in releases:
        lost = sorted(unknown & set(all_md5s(rel.manifest or {})))
        if lost:
            raise StorageError(f"the file list of {rel.tag}'s directory object {lost[0]} is on neither this clone's "
                               "DVC cache nor the DVC remote, so gc cannot tell which files the release needs",
                               hint="push it again from a clone that has the directory (git checkout "
                                    f"{rel.tag} && dvc push), or run `tether check`; nothing was deleted")


def execute_gc(ws: Workspace, plan: GcPlan, store: DvcStore | None = None, on_batch=None) -> None:
    """Deletes the plan's objects; `on_batch(done, total)` after each batch of remote deletions,
    so a gc killed midway has said how much it deleted."""
    store = store or DvcStore(ws.root)
    for oid in plan.cache_delete:
        store.cache.delete(oid)
    if plan.remote_delete:
        remote = store.remote()
        if plan.fetched:  # what origin gained while we planned (a tag that just landed) is kept
            plan.remote_delete = sorted(set(plan.remote_delete) - _reachable_now(ws, store, remote, plan.keep))
        delete_remote(store, remote, plan.remote_delete, on_batch=on_batch)


def _reachable_now(ws: Workspace, store: DvcStore, remote, known: set[str]) -> set[str]:
    """Read origin's branches and tags again, just before deleting: the objects they reach now."""
    refresh_remote_state(ws)
    md5s, _ = _reachable(ws, "--remotes", "--tags")
    for md5 in sorted(m for m in md5s - known if m.endswith(".dir")):
        found = store.local_listing(md5)
        if found is None:
            try:
                found = store.remote_listing(remote, md5)
            except StorageError as exc:
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                raise unreachable(store, cause, "; nothing was deleted") from None
        md5s |= {c["md5"] for c in found or []}
    return md5s
