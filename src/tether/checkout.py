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

from tether import dvcgraph, materialise
from tether.dvcstore import DvcStore
from tether.errors import Conflict, IntegrityError
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


def _lock_outs(ws: Workspace, rev: str | None) -> set[str]:
    """Every DVC output path of the pipeline at `rev` (None: the workspace's dvc.lock)."""
    if rev is None:
        lock = ws.dvc_lock()
    else:
        text = ws.git.run("show", f"{rev}:dvc.lock", check=False).stdout
        lock = load_yaml(text) if text else {}
    return {o.path for s in dvcgraph.lock_stages(lock).values() for o in s.outs
            if o.md5 and not o.path.endswith(".yaml")}


def checkout(ws: Workspace, ref_text: str, *, model: str | None = None, force: bool = False,
             dry_run: bool = False, store: DvcStore | None = None, progress=None) -> CheckoutResult:
    ref = parse_ref(ref_text)
    reg = Registry(ws, messages=False)
    rel = reg.resolve(ref, model)
    if rel.manifest is None:
        raise IntegrityError(f"{rel.tag} is not a complete release: {rel.problem}")
    if ref.env:
        reg.check_tag_integrity(reg.history(rel.name.model, ref.env)[:1])
    store = store or DvcStore(ws.root)
    git = ws.git
    if not force:
        dirty = git.status_porcelain()
        changed = store.changed_stages()
        if dirty or changed:
            what = ", ".join([line[3:] for line in dirty[:4]] + [f"outputs of {s}" for s in list(changed)[:3]])
            raise Conflict(f"the workspace has uncommitted work that checkout would overwrite: {what}",
                           hint="commit or stash it, or pass --force to discard it")
    entries = materialise.needed(rel.manifest, full=True)
    if dry_run:
        target = ws.branch(rel.name.model, ref.env) if ref.env else rel.commit
        return CheckoutResult(release=rel.tag, commit=rel.commit, ref=target, outputs=[e["path"] for e in entries])
    if progress:
        progress(f"fetching and checking {len(entries)} object(s) for {rel.tag} …")
    materialise.ensure_cached(store, entries, progress)

    target_rev = ws.branch(rel.name.model, ref.env) if ref.env else rel.commit
    old_branch = git.current_branch()
    old_head = git.head()
    outs = _lock_outs(ws, None) | _lock_outs(ws, rel.commit)
    backup = Path(tempfile.mkdtemp(prefix=".tether-checkout-", dir=ws.root / ".dvc" / "tmp"
                                   if (ws.root / ".dvc" / "tmp").is_dir() else ws.root))
    moved: list[str] = []
    git_moved = False
    try:
        for path in sorted(outs):
            src = ws.root / path
            if src.exists() or src.is_symlink():
                dst = backup / path
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                moved.append(path)
        git.run("checkout", "--quiet", *([target_rev] if ref.env else ["--detach", target_rev]))
        git_moved = True
        materialise.place_outputs(store, entries, ws.root)
    except BaseException:
        _restore(ws, backup, moved, outs, old_branch or old_head, git_moved)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return CheckoutResult(release=rel.tag, commit=rel.commit, ref=target_rev, outputs=[e["path"] for e in entries])


def _restore(ws: Workspace, backup: Path, moved: list[str], outs: set[str], old_ref: str, git_moved: bool) -> None:
    for path in outs:
        p = ws.root / path
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    if git_moved:
        # The tree was clean before we started (or --force said to discard), so -f loses nothing.
        ws.git.run("checkout", "--quiet", "-f", old_ref)
    for path in moved:
        dst = ws.root / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(backup / path, dst)
    shutil.rmtree(backup, ignore_errors=True)


def verify_release(ws: Workspace, ref_text: str, model: str | None = None, progress=None) -> dict:
    """`tether verify REF`: fetch (cache or remote) and recompute every digest."""
    from tether.bundle import verify_bundle

    reg = Registry(ws, messages=False)
    ref = parse_ref(ref_text)
    rel = reg.resolve(ref, model)
    if rel.manifest is None:
        raise IntegrityError(f"{rel.tag} is not a complete release: {rel.problem}")
    if ref.env:
        reg.check_tag_integrity(reg.history(rel.name.model, ref.env))
    from tether.check import check_releases

    report = check_releases(reg, [rel], None, remote=False)
    if report.findings:
        raise IntegrityError(f"{rel.tag}: " + "; ".join(f.message for f in report.findings))
    store = DvcStore(ws.root)
    entries = materialise.needed(rel.manifest, full=True)
    materialise.ensure_cached(store, entries, progress)
    with tempfile.TemporaryDirectory(prefix="tether-verify-") as tmp:
        dest = Path(tmp) / "release"
        materialise.materialise(ws.git, store, rel.manifest, dest, entries)
        verify_bundle(dest / rel.manifest["artifact"]["path"])
    return {"release": rel.tag, "files": len(entries), "ok": True}


