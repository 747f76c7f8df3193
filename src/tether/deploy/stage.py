"""The staging step of a deploy: a release built in `releases/<id>.partial/` (git tree, DVC
outputs each verified on the way in, the stamp), fsynced, then renamed into place. Outputs that
another release directory already holds with the same digest are hard-linked, not copied (a
threshold-only patch release costs what changed); objects the cache lacks stream from the remote
into the staging directory, each byte written once."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from pathlib import Path

from tether import meter
from tether.adapters import materialise
from tether.core import paths
from tether.core.evalslice import eval_data_path
from tether.servedir.layout import fsync_dir, rmtree
from tether.servedir.stamp import files_under, read_stamp, write_stamp
from tether.adapters.dvcstore import DvcStore
from tether.adapters.nodecache import NodeCache
from tether.errors import StorageError, TetherError
from tether.registry.release import Release
from tether.adapters.workspace import Workspace


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def _unchanged(root: Path, rel: str, recorded: dict) -> bool:
    """A regular file, inside `root` through no symlink, with the size and mtime its stamp
    recorded when deploy verified it."""
    try:
        path = paths.inside(root, rel, "output path")
        st = path.lstat()
    except (OSError, ValueError, TetherError):
        return False
    want = recorded.get(rel)
    return (stat.S_ISREG(st.st_mode) and isinstance(want, list) and len(want) == 2
            and [st.st_size, st.st_mtime_ns] == want)


def shared_outputs(releases: Path, building: str, entries: list[dict]) -> dict[str, materialise.Shared]:
    """{md5: Shared} for the outputs in `entries` that another release directory under
    `releases/` already holds with the same md5 and sha256, every file of them unchanged since
    deploy verified it (the stamp's size and mtime: the same cheap check a switch to a
    materialised release makes; `tether verify --target` and every worker re-hash the bytes).
    Any record that does not check out is skipped: the bytes are then copied from the cache."""
    wanted = {e["md5"]: e for e in entries if e.get("md5")}
    found: dict[str, materialise.Shared] = {}
    try:
        dirs = sorted(releases.iterdir())
    except OSError:
        return found
    for root in dirs:
        if root.name in (building, building + ".partial") or root.name.endswith(".partial") \
                or root.is_symlink() or not root.is_dir():
            continue
        try:
            theirs = json.loads((root / ".tether" / "entries.json").read_text())
            recorded = (read_stamp(root) or {}).get("files") or {}
        except (OSError, ValueError):
            continue
        if not isinstance(theirs, list) or not isinstance(recorded, dict):
            continue
        for e in theirs:
            got = _share(root, e, wanted, recorded) if isinstance(e, dict) and e.get("md5") not in found else None
            if got is not None:
                found[e["md5"]] = got
    return found


def _share(root: Path, e: dict, wanted: dict, recorded: dict) -> materialise.Shared | None:
    want = wanted.get(e.get("md5"))
    rel, sha = e.get("path"), e.get("sha256")
    if want is None or not isinstance(rel, str) or not isinstance(sha, str) or (want.get("sha256") or sha) != sha:
        return None
    if not str(e["md5"]).endswith(".dir"):
        return materialise.Shared(root / rel, sha) if _unchanged(root, rel, recorded) else None
    prefix = rel + "/"
    files = tuple(sorted(k[len(prefix):] for k in recorded if k.startswith(prefix)))
    try:
        on_disk = tuple(sorted(files_under(paths.inside(root, rel, "output path"))))
    except (OSError, TetherError):
        return None
    if not files or files != on_disk or not all(_unchanged(root, prefix + f, recorded) for f in files):
        return None
    return materialise.Shared(root / rel, sha, files)


def build(ws: Workspace, rel: Release, final: Path, *, full: bool, smoke: bool, progress,
          node: NodeCache | None = None) -> dict:
    """`final` (releases/<id>) built, verified, fsynced and renamed into place; never `current`'s
    business. `node`: the host's shared object cache (adapters/nodecache.py), when it has one.
    Returns what it did: {"linked": n outputs shared, "streamed": True/False}."""
    manifest = rel.manifest or {}  # plan_source refuses a release without one
    store = DvcStore(ws.root, node=node)
    eval_paths: tuple[str, ...] = ()
    if smoke:
        eval_paths = (eval_data_path(manifest, ws.settings(rel.name.model)),)
    entries = materialise.needed(manifest, full=full, data_paths=eval_paths)
    shared = shared_outputs(final.parent, final.name, entries)
    rest = [e for e in entries if e["md5"] not in shared]
    meter.expect(sum(_size(e) for e in rest))  # each byte is copied and hashed once (a bar's total)
    if progress:
        progress(f"checking {len(rest)} DVC object(s) for {rel.tag} ({len(shared)} already materialised here) …")
    # Every object must be in the cache or on the remote before the target directory is touched.
    materialise.ensure_available(store, rest, progress)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        rmtree(partial)  # a leftover of a killed deploy
    if final.exists():
        rmtree(final)  # materialised once, but its stamp no longer verifies
    if progress:
        progress(f"materialising {rel.tag} into {partial} and verifying every digest …")
    try:
        placed = materialise.materialise(ws.git, store, manifest, partial, entries, shared=shared, stream=True)
        # what `verify --target` re-checks later: the manifest's digest, or the one just verified
        # against DVC's md5 on the way in (a directory's tree digest, a hand-tagged release's file)
        entries = [{**e, "sha256": e.get("sha256") or placed.get(e["path"])} for e in entries]
        write_stamp(partial, manifest, entries, rel.tag_object)
        if smoke:  # the way `tether serve` will run it: a worker in the release directory
            from tether.runtime.workerproc import smoke_in_worker

            if progress:
                progress(f"smoke-testing {rel.tag} in a worker …")
            smoke_in_worker(partial, eval_paths[0])
        _fsync_tree(partial)
        os.replace(partial, final)
    except BaseException as exc:  # a failed build leaves nothing behind (a kill -9 leaves it to the next deploy)
        with contextlib.suppress(OSError):
            if os.path.lexists(partial):
                rmtree(partial)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(final.parent.parent, rel.tag, sum(int(e.get("size") or 0) for e in rest)) from exc
        raise
    fsync_dir(final.parent)
    return {"linked": len(shared)}


def _size(entry: dict) -> int:
    size = entry.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0


def disk_full(target: Path, tag: str, needed: int) -> StorageError:
    """ENOSPC (or a quota) while building in DIR: exit 7, the space the release's outputs need
    and what is free now that the partial build is gone. `current` was never touched."""
    try:
        free = shutil.disk_usage(target).free
    except OSError:
        free = None
    have = f"{_mb(free)} free" if free is not None else "free space unknown"
    return StorageError(
        f"no space left on the file system of {target}: {tag} needs about {_mb(needed)} for its DVC outputs "
        f"(plus its git files), {have}; the partial build was removed",
        hint=f"free space there (or use a larger --target) and deploy again; nothing was switched, "
             f"the previous release keeps serving")


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
