"""A host's shared object cache (`tether deploy --node-cache DIR`, `TETHER_NODE_CACHE`): several
serving directories on one host (pods on a node sharing a hostPath) fetch each DVC object from
the remote once, into one content-addressed directory, and materialise from there.

Layout of DIR:
    files/md5/ab/cdef…     published objects, read-only, named by their md5 (DVC 3's layout)
    locks/abcdef….lock     one lock file per object (flock): one fetcher per object at a time
    tmp/abcdef….<pid>.<n>  an object being fetched; never read by anyone but its writer
    damaged/abcdef….<ns>   an entry whose bytes did not hash to its name, moved aside

The protocol, per object, under its lock (fcntl.flock, LOCK_EX; the kernel releases it when
the holder dies, kill -9 included):
  - a published entry is hashed; if it hashes to its name it is used, else it is moved to
    damaged/ and fetched again;
  - a missing one is streamed from the remote into tmp/, hashed on the way, and published by
    rename(2) only when its md5 is its name. A process killed while fetching leaves only its
    tmp/ file, which the next holder of the lock removes; no reader ever sees half an object.
So concurrent deploys wanting the same object wait for the first to fetch it, then find it
published and verified: each object crosses the network once per host.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tether.digest import _BLOCK
from tether.errors import IntegrityError, UsageError

ENV_VAR = "TETHER_NODE_CACHE"


def from_env(given: str | Path | None, environ=os.environ) -> NodeCache | None:
    """The node cache named by the option, else by TETHER_NODE_CACHE; None when neither."""
    root = given if given not in (None, "") else (environ.get(ENV_VAR) or "").strip()
    return NodeCache(Path(root)) if root else None


def _digest_name(md5: str) -> str:
    """What an object's bytes hash to: a `.dir` listing's md5 is its name less the suffix."""
    return md5.removesuffix(".dir")


class NodeCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        try:
            for sub in ("files/md5", "locks", "tmp", "damaged"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot use the node cache {self.root}: {exc.strerror}",
                             hint=f"create it writable for this user, or unset {ENV_VAR}") from None

    def path(self, md5: str) -> Path:
        return self.root / "files" / "md5" / md5[:2] / md5[2:]

    def has(self, md5: str) -> bool:
        """Published (not yet verified: `get` hashes it before use)."""
        return self.path(md5).is_file()

    @contextlib.contextmanager
    def _locked(self, md5: str) -> Iterator[None]:
        fd = os.open(self.root / "locks" / f"{md5}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def get(self, md5: str, open_remote: Callable[[], Any]) -> Path:
        """The published, verified object `md5`: from the cache when its bytes hash to its name,
        else fetched (`open_remote()` returns a readable binary file) and verified first."""
        dest = self.path(md5)
        with self._locked(md5):
            if dest.is_file():
                if _md5_of(dest) == _digest_name(md5):
                    return dest
                self._set_aside(md5, dest)
            self._clear_leftovers(md5)
            self._fetch(md5, open_remote, dest)
        return dest

    def _set_aside(self, md5: str, dest: Path) -> None:
        aside = self.root / "damaged" / f"{md5}.{time.time_ns()}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(dest, aside)

    def _clear_leftovers(self, md5: str) -> None:
        """tmp/ files of this object left by a writer that died (we hold its lock: none is alive)."""
        for p in (self.root / "tmp").glob(f"{md5}.*"):
            with contextlib.suppress(OSError):
                p.unlink()

    def _fetch(self, md5: str, open_remote: Callable[[], Any], dest: Path) -> None:
        tmp = self.root / "tmp" / f"{md5}.{os.getpid()}.{time.monotonic_ns()}"
        h = hashlib.md5()
        try:
            with contextlib.closing(open_remote()) as fin, open(tmp, "wb", buffering=0) as fout:
                buf = bytearray(_BLOCK)
                while n := fin.readinto(buf):
                    view = memoryview(buf)[:n]
                    h.update(view)
                    while view:
                        view = view[fout.write(view):]
                os.fsync(fout.fileno())
            if h.hexdigest() != _digest_name(md5):
                raise IntegrityError(
                    f"the DVC remote's object {md5} is corrupt (md5 {h.hexdigest()[:16]}…); it was not cached",
                    hint="push a good copy from a workspace that has it (dvc push); nothing was switched")
            os.chmod(tmp, 0o444)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)  # published whole, or not at all
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _hash(path: Path, hashes: list) -> None:
    buf = bytearray(_BLOCK)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            for h in hashes:
                h.update(memoryview(buf)[:n])


def _md5_of(path: Path) -> str:
    h = hashlib.md5()
    _hash(path, [h])
    return h.hexdigest()


def link_verified(src: Path, dst: Path, sha256: str | None, md5: str, name: str) -> str | None:
    """`dst` as a hard link to the node cache's `src` (no byte copied; both read-only), every
    byte hashed against the manifest's sha256 (else DVC's md5) before it is renamed into place,
    as a copy is verified. Returns the sha256; None when the file system refuses the link
    (another device, no hard links): the caller copies."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tether-link")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp, follow_symlinks=False)
    except OSError:
        return None
    try:
        h, check_md5 = hashlib.sha256(), hashlib.md5()
        _hash(tmp, [h] if sha256 is not None else [h, check_md5])
        got, want = (h.hexdigest(), sha256) if sha256 is not None else (check_md5.hexdigest(), md5)
        if got != want:
            raise IntegrityError(f"{name or dst.name} does not match the manifest ({got[:16]}…, expected "
                                 f"{str(want)[:16]}…)",
                                 hint=f"the node cache's object {src} was replaced: deploy again to fetch a good copy")
        os.replace(tmp, dst)
        return h.hexdigest()
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
