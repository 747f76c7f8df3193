"""Paths a person can write (dvc.yaml, dvc.lock, a tag's manifest, a directory listing, an
environment commit) are checked here before anything reads or writes through them. Pure,
except `inside`, which asks the file system where symlinks lead.

The rule: a path that tether writes to, moves or serves from is relative, normalised, has no
`..` and does not pass through a symlink that leaves its root. Anything else is refused with
exit 6 (IntegrityError) before a single byte is written.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from tether.errors import IntegrityError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: str) -> bool:
    """`s3://bucket/key`, `https://…`: a location outside any work tree (dvc import-url deps)."""
    return bool(_URL.match(path))


def normalise(path: str) -> str:
    """The canonical spelling DVC uses, without changing what the path names: URLs are kept as
    written (normpath would turn `s3://b/k` into `s3:/b/k`), `./a//b` becomes `a/b`, and an
    absolute or `..` path stays absolute or `..` so that `problem` can refuse it."""
    if not isinstance(path, str):
        return path
    if is_url(path):
        return path
    p = posixpath.normpath(path.replace("\\", "/"))
    return p


def problem(path, what: str = "path") -> str | None:
    """Why `path` cannot be written inside a root, or None when it can."""
    if not isinstance(path, str) or not path:
        return f"{what} {path!r} is not a path"
    if "\0" in path:
        return f"{what} {path!r} contains a NUL byte"
    if is_url(path):
        return f"{what} {path!r} is a URL, not a path inside the repository"
    p = path.replace("\\", "/")
    if p.startswith("/") or re.match(r"^[A-Za-z]:", p):
        return f"{what} {path!r} is absolute; it must be relative to the repository"
    parts = p.split("/")
    if ".." in parts:
        return f"{what} {path!r} leaves the repository ('..')"
    if posixpath.normpath(p) in (".", ""):
        return f"{what} {path!r} names the repository itself"
    if p.startswith(".git/") or p == ".git" or "/.git/" in p or p.endswith("/.git"):
        return f"{what} {path!r} is inside git's own directory"
    return None


def safe(path, what: str = "path") -> str:
    """The normalised relative path, or IntegrityError (exit 6)."""
    why = problem(path, what)
    if why:
        raise IntegrityError(why, hint="paths in dvc.yaml, dvc.lock and manifests must be relative and stay inside "
                                       "the repository; nothing was written")
    return posixpath.normpath(path.replace("\\", "/"))


def inside(root: Path, path: str, what: str = "path") -> Path:
    """`root / path`, after checking that the path is safe and that no existing directory on the
    way is a symlink leading out of `root`. The last component itself is not followed: tether
    replaces it (os.replace), never writes through it."""
    rel = safe(path, what)
    target = Path(root) / rel
    real_root = os.path.realpath(root)
    parent = os.path.realpath(target.parent)
    if parent != real_root and not parent.startswith(real_root.rstrip(os.sep) + os.sep):
        raise IntegrityError(f"{what} {path!r} passes through a symlink that leaves {root}",
                             hint="remove the symlink; nothing was written")
    return target
