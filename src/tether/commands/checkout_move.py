"""The move itself for `tether checkout`: git and the tuple's outputs together, all or nothing.

Every object is fetched and checked first; then the outputs we displace wait in a backup
directory on the same filesystem (so restoring them is a rename, never a copy that could fail
half-way), and any failure puts the workspace back exactly as it was.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from tether.adapters import materialise
from tether.adapters.dvcstore import DvcStore
from tether.adapters.workspace import Workspace
from tether.commands.checkout_safety import refuse_unsaved, require_kept, tuple_outputs
from tether.core import dvcgraph, paths
from tether.errors import StorageError, TetherError

_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _bytes_needed(store: DvcStore, entries: list[dict]) -> int:
    total = 0
    for e in entries:
        if e["md5"].endswith(".dir"):
            total += sum(store.cache_path(c["md5"]).stat().st_size for c in materialise.dir_listing(store, e["md5"]))
        else:
            total += store.cache_path(e["md5"]).stat().st_size
    return total


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def move_tuple(ws: Workspace, store: DvcStore, models: list[str], target_rev: str, detach: bool, entries: list[dict],
               force: bool, dry_run: bool, progress, label: str) -> None:
    """Check, then move git and the tuple's outputs together: on any failure (a bad object, a
    full disk) every output we displaced comes back and git returns to where it was."""
    git = ws.git
    for e in entries:
        paths.inside(ws.root, e["path"], "output path")
    old_outputs = tuple_outputs(ws, None, models)
    old_paths = set(old_outputs)
    old_branch = git.current_branch()
    old_head = git.head()
    if not force:
        refuse_unsaved(ws, store, old_outputs)
    require_kept(ws, old_branch, old_head)
    if dry_run:
        return
    _fetch(store, entries, progress, label)

    outs = {p for p in old_paths | {e["path"] for e in entries} if paths.problem(p) is None}
    for p in outs:
        paths.inside(ws.root, p, "output path")
    need = _require_room(ws, store, entries, label)
    backup = _backup_dir(ws, label)
    _swap(ws, store, backup, outs, entries, target_rev, detach,
          force=force, old_branch=old_branch, old_head=old_head, label=label, need=need)
    shutil.rmtree(backup, ignore_errors=True)


def _fetch(store: DvcStore, entries: list[dict], progress, label: str) -> None:
    """Every object into the DVC cache, checked, before anything in the workspace moves."""
    if progress:
        progress(f"fetching and checking {len(entries)} object(s) for {label} …")
    try:
        materialise.ensure_cached(store, entries, progress)
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS:  # the cache filled its disk: nothing in the workspace moved yet
            raise StorageError(f"no room to fetch {label}'s objects into the DVC cache ({exc.strerror}); nothing changed",
                               hint="free space on the cache's filesystem, then run again") from None
        raise


def _require_room(ws: Workspace, store: DvcStore, entries: list[dict], label: str) -> int:
    """The bytes the new outputs need; StorageError, with nothing changed, when the workspace's
    filesystem has less free."""
    need, free = _bytes_needed(store, entries), _free(ws.root)
    if need > free:  # the displaced outputs are renamed, not freed: every new byte needs room
        raise StorageError(f"not enough space in {ws.root} to check out {label}: its outputs need {_mib(need)}, "
                           f"{_mib(free)} free; nothing changed",
                           hint="free space on that filesystem (or move the DVC cache to another one), then run again")
    return need


def _backup_dir(ws: Workspace, label: str) -> Path:
    """Where the displaced outputs wait: on the workspace's filesystem, so moving them is a rename."""
    tmp_root = ws.root / ".dvc" / "tmp"
    try:
        return Path(tempfile.mkdtemp(prefix=".tether-checkout-", dir=tmp_root if tmp_root.is_dir() else ws.root))
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS:
            raise StorageError(f"no room in {ws.root} to check out {label} ({exc.strerror}); nothing changed",
                               hint="free space on that filesystem, then run again") from None
        raise


def _swap(ws: Workspace, store: DvcStore, backup: Path, outs: set[str], entries: list[dict], target_rev: str,
          detach: bool, *, force: bool, old_branch: str | None, old_head: str, label: str, need: int) -> None:
    """Outputs aside, git to `target_rev`, the new outputs in; any failure restores all three."""
    git = ws.git
    moved: list[str] = []
    git_tried = False
    writing = "the git tree"
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
        git_tried = True
        git.checkout(target_rev, detach=detach)
        for e in entries:  # one at a time, so that a failed write names its output
            writing = e["path"]
            materialise.place_outputs(store, [e], ws.root)
    except BaseException as exc:
        # Without --force the tree was clean, so forcing git back loses nothing; with it, only a
        # HEAD that moved is forced back (a refused checkout changed nothing of git's).
        git_back = git_tried and (not force or git.rev_parse("HEAD") != old_head)
        try:
            _restore(ws, backup, moved, outs, old_branch or old_head, git_back)
        except Exception as again:
            raise StorageError(f"checkout of {label} failed ({_short(exc)}) and putting the workspace back failed "
                               f"too ({_short(again)})",
                               hint=f"the outputs it displaced are in {backup}: move them back, then "
                                    f"git checkout -f {old_branch or old_head[:12]}") from exc
        no_room = _no_room(ws.root, exc, writing, label, need)
        if no_room is not None:
            raise no_room from None
        raise


def _no_room(root: Path, exc: BaseException, writing: str, label: str, need: int) -> StorageError | None:
    """A failure that was a full disk, said as one (the workspace is back as it was)."""
    if isinstance(exc, OSError) and exc.errno in _SPACE_ERRNOS:
        name = _where(root, exc.filename) if exc.filename else writing
        return StorageError(f"no room to write {name} in {root} ({exc.strerror}) checking out {label}: its "
                            f"outputs need {_mib(need)}; the workspace is as it was",
                            hint="free space on that filesystem, then run again")
    if isinstance(exc, TetherError) and not isinstance(exc, StorageError) and "No space left" in str(exc):
        return StorageError(f"no room in {root} checking out {label} (git: {_short(exc)}); "
                            "the workspace is as it was", hint="free space on that filesystem, then run again")
    return None


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _where(root: Path, filename: str | bytes) -> str:
    """The output a failed write was for, relative to the workspace (our temporary name stripped)."""
    p = Path(os.fsdecode(filename))
    if p.name.endswith(".tether-tmp"):
        p = p.with_name(p.name[: -len(".tether-tmp")])
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _restore(ws: Workspace, backup: Path, moved: list[str], outs: set[str], old_ref: str, git_back: bool) -> None:
    for path in sorted(outs, reverse=True):
        p = ws.root / path
        tmp = p.with_name(p.name + ".tether-tmp")  # a write cut short (no space) leaves its temporary
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    if git_back:
        # The tree was clean before we started (or --force said to discard), so -f loses nothing.
        ws.git.checkout(old_ref, force=True)
    for path in moved:
        dst = ws.root / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(backup / path, dst)
    shutil.rmtree(backup, ignore_errors=True)
