"""SHA-256 of files, streamed in large blocks so verification runs near hashlib's own speed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Set as AbstractSet
from pathlib import Path

from tether import meter

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    return _file_digest(path, hashlib.sha256())


def md5_file(path: str | Path) -> str:
    """DVC's content id of a file (its md5), read in blocks."""
    return _file_digest(path, hashlib.md5())


def _file_digest(path: str | Path, h) -> str:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_BLOCK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            meter.advance(n)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_sha256(files: dict[str, str]) -> str:
    """One SHA-256 for a directory output, from the SHA-256 of every file in it: the digest of
    its `sha256sum`-style listing (`<sha256>  <relpath>\\n`, sorted by path). Any changed, added
    or removed file changes it, and the manifest stays one line per directory whatever the
    number of files (docs/design.md, "Directory outputs carry one tree digest"). Reproduce it by hand with
    `cd DIR && find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum`."""
    h = hashlib.sha256()
    for rel in sorted(files, key=lambda p: p.encode()):
        h.update(f"{files[rel]}  {rel}\n".encode())
    return h.hexdigest()


def tree_sha256_of(root: str | Path, relpaths=None) -> tuple[str, dict[str, str]]:
    """(tree digest, {relpath: sha256}) of the files under `root`: every regular file, or just
    `relpaths`. Symlinks are not followed and count as a mismatch of their own."""
    root = Path(root)
    if relpaths is None:
        relpaths = []
        for dirpath, dirs, names in os.walk(root):
            dirs.sort()
            for name in names:
                relpaths.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    files = {}
    for rel in relpaths:
        p = root / rel
        files[rel] = "symlink" if p.is_symlink() else sha256_file(p)
    return tree_sha256(files), files


def git_blob_id(data: bytes) -> str:
    """What `git hash-object` says for these bytes."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def git_tree_id(root: str | Path, exclude: AbstractSet[str] = frozenset()) -> str | None:
    """The git tree id of the files under `root` (what `git write-tree` would record for them),
    less the relative paths in `exclude` (files or whole directories). None for an empty tree.
    Modes as git keeps them: 100755 for an executable file, 100644 for any other, 120000 for a
    symlink (its target is the content); empty directories do not exist for git."""
    root = Path(root)

    def tree(rel: str) -> str | None:
        entries = []
        base = root / rel if rel else root
        for name in os.listdir(base):
            sub = f"{rel}/{name}" if rel else name
            if sub in exclude:
                continue
            p = base / name
            if p.is_symlink():
                entries.append((name.encode(), b"120000", git_blob_id(os.readlink(p).encode())))
            elif p.is_dir():
                tid = tree(sub)
                if tid is not None:
                    entries.append((name.encode() + b"/", b"40000", tid))
            else:
                mode = b"100755" if os.stat(p).st_mode & 0o100 else b"100644"
                entries.append((name.encode(), mode, git_blob_id(p.read_bytes())))
        if not entries:
            return None
        entries.sort(key=lambda e: e[0])  # git sorts a tree's names with "/" after directories
        body = b"".join(mode + b" " + name.rstrip(b"/") + b"\0" + bytes.fromhex(oid) for name, mode, oid in entries)
        return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()

    return tree("")
