"""`tether checkout`: the safe form of `git checkout <rev> && dvc pull` in a workspace.

Plain git + DVC moves code and params first, then fails part-way on a missing object and leaves
old weights beside new code with `git status` clean. Here every object is fetched and checked
first; then git and the outputs move together, and any failure puts the workspace back exactly
as it was: the outputs we displaced wait in a backup directory on the same filesystem (so
restoring them is a rename, never a copy that could fail half-way).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tether import dvcgraph, materialise, paths
from tether.dvcstore import DvcStore
from tether.errors import Conflict, IntegrityError, TetherError
from tether.refs import parse_ref
from tether.registry import Registry
from tether.workspace import Workspace, load_yaml


@dataclass
class CheckoutResult:
    release: str
    commit: str
    ref: str
    outputs: list[str]

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _tuple_paths(ws: Workspace, rev: str | None, model: str) -> tuple[set[str], set[str]]:
    """(DVC-tracked paths of the model's tuple, its stages and .dvc files) in the pipeline at
    `rev` (None: the workspace). Other outputs (evaluation reports, plots, other models) are not
    checkout's to move."""
    if rev is None:
        dvc_yaml, lock = ws.dvc_yaml, ws.dvc_lock()
    else:
        text = ws.git.show_optional(rev, "dvc.lock")
        lock = load_yaml(text) if text else {}
        text = ws.git.show_optional(rev, "dvc.yaml")
        dvc_yaml = load_yaml(text) if text else {}
    try:
        graph = dvcgraph.model_graph(dvc_yaml or {}, lock or {}, model)
    except TetherError:
        return set(), set()
    tracked = {e.path for e in graph.weights + graph.data if e.md5 and not e.external}
    if tracked:  # files git holds (a model kept in git, a small dep) are git checkout's to move
        tracked -= ws.git.names_in(rev or "HEAD", sorted(tracked))
    keys = {st.name for st in graph.stages} | {f"{p}.dvc" for p in tracked} | {graph.artifact.path + ".dvc"}
    return tracked, keys


def _dirty_outputs(changed: dict, tracked: set[str]) -> list[str]:
    """Outputs of the tuple that `dvc status` finds modified in the workspace: the work checkout
    would overwrite. An evaluation report or another model's output is not in the way."""
    found = set()
    for entries in changed.values():
        for item in entries if isinstance(entries, list) else ():
            outs = item.get("changed outs") if isinstance(item, dict) else None
            for path in outs or {}:
                p = dvcgraph.norm(path)
                if any(dvcgraph.under(p, t) or dvcgraph.under(t, p) for t in tracked):
                    found.add(p)
    return sorted(found)


def checkout(ws: Workspace, ref_text: str, *, model: str | None = None, force: bool = False,
             dry_run: bool = False, store: DvcStore | None = None, progress=None) -> CheckoutResult:
    ref = parse_ref(ref_text)
    reg = Registry(ws, messages=False)
    rel = reg.resolve(ref, model)
    manifest = rel.require_trusted("checked out")
    if ref.env:
        reg.check_tag_integrity(reg.history(rel.name.model, ref.env)[:1])
    store = store or DvcStore(ws.root)
    git = ws.git
    model_name = rel.name.model
    entries = materialise.needed(manifest, full=True)
    for e in entries:  # every path this checkout would write, checked before anything moves
        paths.inside(ws.root, e["path"], "output path")
    target_rev = ws.branch(model_name, ref.env) if ref.env else rel.commit
    if ref.env:
        _check_env_tree(ws, target_rev, rel)
    old_paths, _stages = _tuple_paths(ws, None, model_name)
    if not force:
        dirty = git.status_porcelain()
        changed = _dirty_outputs(store.changed_stages(), old_paths)
        if dirty or changed:
            what = ", ".join([line[3:] for line in dirty[:4]] + changed[:4])
            raise Conflict(f"the workspace has uncommitted work that checkout would overwrite: {what}",
                           hint="commit or stash it, or pass --force to discard it")
    if dry_run:
        return CheckoutResult(release=rel.tag, commit=rel.commit, ref=target_rev, outputs=[e["path"] for e in entries])
    if progress:
        progress(f"fetching and checking {len(entries)} object(s) for {rel.tag} …")
    materialise.ensure_cached(store, entries, progress)

    old_branch = git.current_branch()
    old_head = git.head()
    outs = {p for p in old_paths | {e["path"] for e in entries} if paths.problem(p) is None}
    for p in outs:
        paths.inside(ws.root, p, "output path")
    backup = Path(tempfile.mkdtemp(prefix=".tether-checkout-", dir=ws.root / ".dvc" / "tmp"
                                   if (ws.root / ".dvc" / "tmp").is_dir() else ws.root))
    moved: list[str] = []
    git_moved = False
    try:
        for path in sorted(outs):
            src = ws.root / path
            if src.exists() or src.is_symlink():
                if any(dvcgraph.under(path, m) for m in moved):
                    continue  # inside a directory already moved aside
                dst = backup / path
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                moved.append(path)
        git.checkout(target_rev, detach=not ref.env)
        git_moved = True
        materialise.place_outputs(store, entries, ws.root)
    except BaseException:
        _restore(ws, backup, moved, outs, old_branch or old_head, git_moved)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return CheckoutResult(release=rel.tag, commit=rel.commit, ref=target_rev, outputs=[e["path"] for e in entries])


def _check_env_tree(ws: Workspace, branch: str, rel) -> None:
    """`checkout ENV` only onto a branch whose tree is exactly its release's tree: anything else
    is the half state (new code, old weights, or the reverse) checkout exists to prevent."""
    head = ws.git.ref(f"refs/heads/{branch}") or ws.git.ref(f"refs/remotes/origin/{branch}")
    tree = ws.git.rev_parse(f"{head}^{{tree}}") if head else None
    if tree != rel.tree:
        raise IntegrityError(f"{branch}'s tree is not {rel.tag}'s tree: it was edited by hand",
                             hint=f"move it to a release with tether promote/rollback, or check out the release "
                                  f"itself: tether checkout {rel.tag}")


def _restore(ws: Workspace, backup: Path, moved: list[str], outs: set[str], old_ref: str, git_moved: bool) -> None:
    for path in sorted(outs, reverse=True):
        p = ws.root / path
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    if git_moved:
        # The tree was clean before we started (or --force said to discard), so -f loses nothing.
        ws.git.checkout(old_ref, force=True)
    for path in moved:
        dst = ws.root / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(backup / path, dst)
    shutil.rmtree(backup, ignore_errors=True)


def verify_release(ws: Workspace, ref_text: str, model: str | None = None, progress=None) -> dict:
    """`tether verify REF`: fetch (cache or remote) and recompute every digest."""
    from tether.bundle import is_bundle, verify_bundle

    reg = Registry(ws, messages=False)
    ref = parse_ref(ref_text)
    rel = reg.resolve(ref, model)
    manifest = rel.require_trusted("verified")
    if ref.env:
        reg.check_tag_integrity(reg.history(rel.name.model, ref.env))
    from tether.check import check_releases

    report = check_releases(reg, [rel], None, remote=False)
    if report.findings:
        raise IntegrityError(f"{rel.tag}: " + "; ".join(f.message for f in report.findings))
    store = DvcStore(ws.root)
    entries = materialise.needed(manifest, full=True)
    materialise.ensure_cached(store, entries, progress)
    with tempfile.TemporaryDirectory(prefix="tether-verify-") as tmp:
        dest = Path(tmp) / "release"
        materialise.materialise(ws.git, store, manifest, dest, entries)
        art = dest / manifest["artifact"]["path"]
        if is_bundle(art):
            verify_bundle(art)
    # Every file inside a directory output was hashed on its own (md5 against DVC's listing,
    # sha256 into the directory's tree digest): count the files proved, not manifest lines.
    files = sum(len(materialise.dir_listing(store, e["md5"])) if e["md5"].endswith(".dir") else 1 for e in entries)
    return {"release": rel.tag, "files": files, "outputs": len(entries), "ok": True}


