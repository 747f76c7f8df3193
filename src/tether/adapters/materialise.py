"""Put a release's tuple into a directory: its git tree plus its DVC outputs, every byte
checked against the manifest. Shared by deploy, checkout, verify and the smoke test."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import sys
import tarfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tether import meter
from tether.core import paths
from tether.digest import _BLOCK, sha256_file, tree_sha256, tree_sha256_of
from tether.adapters.dvcstore import DvcStore
from tether.adapters.nodecache import link_verified
from tether.errors import IntegrityError, StorageError
from tether.adapters.gitrepo import Git
from tether.core.manifest import dvc_objects


def needed(manifest: dict, full: bool = False, data_paths: tuple[str, ...] = ()) -> list[dict]:
    """The DVC entries to materialise: the model's own outputs, plus all data with `full`, or
    just the named data files (e.g. the frozen eval slice for a smoke test)."""
    weights = {e["path"] for e in manifest["components"]["weights"]}
    return [e for e in dvc_objects(manifest) if e["path"] in weights or full or e["path"] in data_paths]


def _require_on_remote(store: DvcStore, missing, by_md5: dict[str, str]) -> None:
    """StorageError naming every file of `missing` the DVC remote does not have (one query)."""
    absent = store.missing_on_remote(missing)
    if absent:
        names = ", ".join(sorted(by_md5[m] for m in absent))
        raise StorageError(f"the DVC remote lacks {len(absent)} object(s) this release needs: {names}",
                           hint="push them from a workspace that has them: dvc push")


def ensure_cached(store: DvcStore, entries: list[dict], progress=None) -> None:
    """Every object in the local cache, fetched from the remote if need be. Raises
    StorageError naming the files the remote does not have, before anything else is touched."""
    by_md5 = {e["md5"]: e["path"] for e in entries if e.get("md5")}
    missing = store.missing_in_cache(by_md5)
    if missing:
        if progress:
            progress(f"fetching {len(missing)} object(s) from the DVC remote …")
        _require_on_remote(store, missing, by_md5)
        store.fetch(missing)
    still = store.missing_in_cache(by_md5)
    if still:
        names = ", ".join(sorted(by_md5[m] for m in still))
        raise StorageError(f"objects did not arrive in the cache: {names}")
    for md5 in by_md5:
        if md5.endswith(".dir"):
            for child in dir_listing(store, md5):
                if not store.cache_path(child["md5"]).exists():
                    raise StorageError(f"object {child['relpath']} of {by_md5[md5]} is missing from the cache")


def ensure_available(store: DvcStore, entries: list[dict], progress=None) -> None:
    """What ensure_cached checks, without filling the cache: every object is in the local
    cache or on the remote (one existence query), before anything is written. Only the small
    `.dir` listings are fetched; the files stream from the remote as they are placed
    (place_outputs with stream=True), so each byte is written once."""
    by_md5 = {e["md5"]: e["path"] for e in entries if e.get("md5")}
    missing = store.missing_in_cache(by_md5)
    if store.node is not None:
        missing = {m for m in missing if not store.on_node(m)}
    if not missing:
        return
    if progress:
        progress(f"{len(missing)} object(s) will stream from the DVC remote …")
    _require_on_remote(store, missing, by_md5)
    store.fetch_listings({m for m in missing if m.endswith(".dir")})
    for md5 in missing:
        if md5.endswith(".dir") and not store.cache_path(md5).exists():
            raise StorageError(f"the listing of {by_md5[md5]} did not arrive in the cache")


def dir_listing(store: DvcStore, md5: str) -> list[dict]:
    """The validated listing (relative paths only, no `..`): paths from storage are untrusted."""
    return store.dir_entries(md5)


def write_git_tree(git: Git, commit: str, dest: Path) -> None:
    data = git.archive(commit)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:  # git archive --format=tar: never compressed
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError as exc:  # a symlink (or path) in the commit that leaves the tree
            raise IntegrityError(f"the release's git tree at {commit[:12]} holds {exc}",
                                 hint="a link or path in the commit points outside the release; nothing outside "
                                      "was written") from None


def _copy(src: Path, dst: Path, sha256: str | None = None, name: str = "", md5: str | None = None) -> str:
    """A copy of a cache object, never a hardlink: the cache must not change if someone edits
    the served file. Verified as it is written (see _write). Returns the copy's sha256."""
    with open(src, "rb", buffering=0) as fin:
        return _write(fin, dst, sha256, name, md5,
                      f"the cache object {src} is corrupt: delete it and run again to fetch a good copy")


def _stream(store: DvcStore, md5: str, dst: Path, sha256: str | None, name: str) -> str:
    """An object read from the DVC remote straight into `dst`, hashed as it is written (each
    byte written once, not into the cache and then again into the release), then hard-linked
    into the local cache so a later rollback to it needs no remote. Only a verified file is
    linked: a kill before that leaves nothing in the cache."""
    with store.open_remote(md5) as fin:
        digest = _write(_RemoteRead(fin, store, md5, name), dst, sha256, name, md5,
                        f"the DVC remote's object {md5} is corrupt: push a good copy from a workspace that has it")
    store.adopt(md5, dst)
    return digest


def remote_object(store: DvcStore, md5: str) -> str:
    """Where object `md5` lives on the DVC remote, for a message: its URL (DVC 3's layout)
    and the endpoint, e.g. `s3://bucket/store/files/md5/ab/cdef… at http://minio:9000`."""
    try:
        _name, settings = store.remote_settings()
    except Exception:  # a message helper: never the reason a failure goes unexplained
        return f"object {md5}"
    url = str(settings.get("url") or "").rstrip("/")
    endpoint = settings.get("endpointurl")
    return f"{url}/files/md5/{md5[:2]}/{md5[2:]}" + (f" at {endpoint}" if endpoint else "")


class _RemoteRead:
    """A remote object's reader whose failures are storage failures (exit 7) naming the file,
    the object and the endpoint: s3fs and fsspec raise the builtin PermissionError (403),
    OSError (a 500 after retries, a dropped connection) or FileNotFoundError (deleted since the
    existence check) only when the bytes are read, long after the object was opened."""

    def __init__(self, fin, store: DvcStore, md5: str, name: str) -> None:
        self.fin, self.store, self.md5, self.name = fin, store, md5, name

    def close(self) -> None:
        self.fin.close()

    def readinto(self, buf) -> int:
        try:
            return self.fin.readinto(buf)
        except StorageError:
            raise
        except Exception as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> StorageError:
        where = remote_object(self.store, self.md5)
        after = "nothing was switched; the previous release keeps serving"
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        if isinstance(exc, FileNotFoundError):
            return StorageError(f"the DVC remote lost {self.name} ({where}) while it was being read",
                                hint=f"push it again from a workspace that has it (dvc push); {after}")
        if isinstance(exc, PermissionError):
            return StorageError(f"the DVC remote refused to read {self.name} ({where}): permission denied ({reason})",
                                hint=f"check the credentials this host uses for the remote; {after}")
        return StorageError(f"reading {self.name} from the DVC remote ({where}) failed: {type(exc).__name__}: {reason}",
                            hint=f"check that the remote is reachable (dvc remote list) and try again; {after}")


def _write(fin, dst: Path, sha256: str | None, name: str, md5: str | None, hint: str) -> str:
    """`fin`'s bytes into `dst` (read-only), hashed in the same pass; a mismatch refuses the
    file before anything can use it: against the manifest's sha256, else (files inside
    directory outputs, releases tagged by hand) against DVC's own md5. Memory stays two blocks."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tether-tmp")
    h = hashlib.sha256()
    check_md5 = hashlib.md5() if sha256 is None and md5 is not None else None
    hashes = [h] if check_md5 is None else [h, check_md5]
    with open(tmp, "wb", buffering=0) as fout:
        _pump(fin, fout, hashes)
    bad: tuple[str, str, str] | None = None
    if sha256 is not None and h.hexdigest() != sha256:
        bad = ("sha256", h.hexdigest(), sha256)
    elif check_md5 is not None and check_md5.hexdigest() != md5:
        bad = ("md5", check_md5.hexdigest(), str(md5))
    if bad:
        tmp.unlink()
        raise IntegrityError(
            f"{name or dst.name} does not match the manifest ({bad[0]} {bad[1][:16]}…, expected {str(bad[2])[:16]}…)",
            hint=hint)
    os.chmod(tmp, 0o444)
    os.replace(tmp, dst)
    return h.hexdigest()


# After this many blocks of one file, its hashing moves to a thread of its own and overlaps the
# reading and writing of the next block (hashlib and file I/O both release the GIL). Small files,
# a directory output's thousands of them, never pay for a thread.
_OVERLAP_AFTER = 8


def _update(hashes: list, view: memoryview) -> None:
    for x in hashes:
        x.update(view)


def _write_all(fout, view: memoryview) -> None:
    """A raw file's write may be short: write until every byte is out."""
    while view:
        view = view[fout.write(view):]


# Every this many bytes written, the kernel is asked to start writing them to disk (it does not
# wait for the disk), so the fsync a deploy makes before its switch finds little left to flush
# instead of the whole file: the disk works while the stream is still being read and hashed.
_WRITEBACK = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of the range's dirty pages, do not wait


@functools.cache
def _sync_file_range():
    """libc's sync_file_range (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


class _Writeback:
    """Starts writeback of each _WRITEBACK bytes written to `fout`, in order, once. A file without a descriptor, a
    platform without sync_file_range, or a call that fails (a pipe, a filesystem that refuses) turns it off:
    durability still comes from the fsync before the switch; this only moves its work earlier."""

    def __init__(self, fout) -> None:
        try:
            self.fd: int | None = fout.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self.fd = None
        self.on = self.fd is not None
        self.started = self.written = 0

    def wrote(self, n: int) -> None:
        self.written += n
        if not self.on or self.written - self.started < _WRITEBACK:
            return
        fn = _sync_file_range()  # looked up only now: a deploy of small files never loads ctypes
        if fn is None or fn(self.fd, self.started, self.written - self.started, _SYNC_FILE_RANGE_WRITE) != 0:
            self.on = False
        self.started = self.written


def _pump(fin, fout, hashes: list) -> None:
    """Every block of `fin` hashed and written to `fout`, once. Two buffers alternate: the hash
    of block i runs while block i is written and block i+1 is read, and is awaited before its
    buffer is read into again, so the digests see the bytes in order and never a half-read block.
    Writeback to disk starts as the bytes go out (_Writeback)."""
    bufs = (bytearray(_BLOCK), bytearray(_BLOCK))
    pool: ThreadPoolExecutor | None = None
    pending: Future | None = None
    writeback = _Writeback(fout)
    i = 0
    try:
        while n := fin.readinto(bufs[i % 2]):
            view = memoryview(bufs[i % 2])[:n]
            if pending is not None:
                pending.result()  # block i-1: its buffer is the next one read into
                pending = None
            if pool is None and i >= _OVERLAP_AFTER:
                pool = ThreadPoolExecutor(1, thread_name_prefix="tether-hash")
            if pool is None:
                _update(hashes, view)
            else:
                pending = pool.submit(_update, hashes, view)
            _write_all(fout, view)
            writeback.wrote(n)
            meter.advance(n)
            i += 1
        if pending is not None:
            pending.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


@dataclass(frozen=True)
class Shared:
    """An output already materialised, and verified, in another release directory: a file, or
    a directory with its files' relative paths. Release directories are read-only, so a new
    release may hard-link it instead of copying (deploystage.shared_outputs finds them)."""
    path: Path
    sha256: str
    files: tuple[str, ...] = ()


def _link(src: Path, dst: Path) -> bool:
    """`dst` as a hard link to `src` (the same inode: no byte copied). False when the
    filesystem refuses (another device, no hard links, too many links): the caller copies."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tether-tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp, follow_symlinks=False)
    except OSError:
        return False
    os.replace(tmp, dst)
    return True


def _place_shared(e: dict, shared: Shared, target: Path, dest: Path) -> bool:
    """Link a shared output into `dest`; False (and nothing of it left) when linking fails."""
    if not e["md5"].endswith(".dir"):
        return _link(shared.path, target)
    done: list[Path] = []
    for rel in shared.files:
        if not _link(shared.path / rel, paths.inside(dest, f"{e['path']}/{rel}", "output path")):
            for d in done:
                d.unlink()
            return False
        done.append(paths.inside(dest, f"{e['path']}/{rel}", "output path"))
    return True


def _object(store: DvcStore, md5: str, dst: Path, sha256: str | None, name: str, stream: bool) -> str:
    """One file object into `dst`: from the cache, or (`stream`) from the remote when the cache lacks it."""
    if store.node is not None and not store.cache_path(md5).exists():
        # through the host's node cache: a verified hard link where the file system allows, else a copy
        src = store.node.get(md5, lambda: _RemoteRead(store.open_remote(md5), store, md5, name))
        linked = link_verified(src, dst, sha256, md5, name)
        return linked if linked is not None else _copy(src, dst, sha256, name, md5=md5)
    cached = store.cache_path(md5)
    if stream and not cached.exists():
        return _stream(store, md5, dst, sha256, name)
    return _copy(cached, dst, sha256, name, md5=md5)


def place_outputs(store: DvcStore, entries: list[dict], dest: Path, *, shared: dict[str, Shared] | None = None,
                  stream: bool = False) -> dict[str, str]:
    """Every output into `dest`, verifying every file on the way: a file against its sha256 (or
    md5), a directory file by file against DVC's listing and as a whole against its tree sha256
    (digest.tree_sha256). An output in `shared` (by md5) is hard-linked from the release
    directory that already holds it; with `stream`, an object the cache lacks is read from the
    remote (see ensure_available). Returns {path: sha256} of what was placed."""
    for e in entries:  # every path is checked before the first byte is written
        paths.inside(dest, e["path"], "output path")
    placed = {}
    for e in entries:
        md5 = e["md5"]
        target = paths.inside(dest, e["path"], "output path")
        got = (shared or {}).get(md5)
        if got is not None and _place_shared(e, got, target, dest):
            placed[e["path"]] = got.sha256
        elif md5.endswith(".dir"):
            files = {}
            for child in dir_listing(store, md5):
                rel = f"{e['path']}/{child['relpath']}"
                files[child["relpath"]] = _object(store, child["md5"], paths.inside(dest, rel, "output path"),
                                                  None, rel, stream)
            placed[e["path"]] = tree_sha256(files)
            if e.get("sha256") and placed[e["path"]] != e["sha256"]:
                raise IntegrityError(f"{e['path']}/ does not match the manifest (tree sha256 "
                                     f"{placed[e['path']][:16]}…, expected {e['sha256'][:16]}…)",
                                     hint="a file in the DVC cache or remote was replaced; fetch it again from a "
                                          "trusted remote")
        else:
            placed[e["path"]] = _object(store, md5, target, e.get("sha256"), e["path"], stream)
    return placed


def verify_outputs(entries: list[dict], root: Path) -> None:
    """Recompute every SHA-256 against the manifest; the first mismatch names the file. A
    directory is checked as a whole: every file in it, none added, none missing."""
    for e in entries:
        path = paths.inside(root, e["path"], "output path")
        if not path.exists():
            raise IntegrityError(f"{e['path']} is missing from {root}")
        if not e.get("sha256"):
            continue
        if path.is_dir() and not path.is_symlink():
            actual, _files = tree_sha256_of(path)
        elif path.is_file() and not path.is_symlink():
            actual = sha256_file(path)
        else:
            raise IntegrityError(f"{e['path']} in {root} is not a regular file or directory")
        if actual != e["sha256"]:
            raise IntegrityError(
                f"{e['path']} does not match the manifest (sha256 {actual[:16]}…, expected {e['sha256'][:16]}…)",
                hint="the file or a cache object was modified; remove it and fetch again",
            )


def materialise(git: Git, store: DvcStore, manifest: dict, dest: Path, entries: list[dict], *,
                shared: dict[str, Shared] | None = None, stream: bool = False) -> dict[str, str]:
    """Into `dest` (which must not exist): git tree, DVC outputs, each verified as it is placed."""
    dest.mkdir(parents=True)
    write_git_tree(git, manifest["commit"], dest)
    return place_outputs(store, entries, dest, shared=shared, stream=stream)
