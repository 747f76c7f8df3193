"""What tether keeps under `.git/tether` to save work is sealed with a key only this user can read.

A file under `.git/` is anybody's to write who can write the repository (a teammate on a shared
host, a CI job, a tool). A kept derivation of a release (its manifest, metrics and threshold)
feeds promote's gates, gc's keep set and deploy, so a forged one could pass a regression or
delete a release's data. Each kept file carries an HMAC-SHA256 of its body under a key in the
user's own cache directory (`$XDG_CACHE_HOME/tether/seal.key`, else `~/.cache/tether/seal.key`,
created 0600 on first use); a file whose seal does not verify, or that another user wrote, is
not used and the answer is derived from git again. Where no key can be kept (no writable home),
nothing is kept and nothing is trusted: commands only get slower.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

_KEYS: dict[Path, bytes | None] = {}  # each key file, once read (None: no key can be kept there)


def key_path() -> Path:
    """`$TETHER_CACHE_DIR/seal.key` when set (one key for a user's several homes, e.g. a test
    session), else `$XDG_CACHE_HOME/tether/seal.key`, else `~/.cache/tether/seal.key`."""
    own = os.environ.get("TETHER_CACHE_DIR")
    if own:
        return Path(own) / "seal.key"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tether" / "seal.key"


def _key() -> bytes | None:
    """The key of the cache directory in effect now (a process that changes HOME, such as a
    test run, follows it)."""
    path = key_path()
    if path in _KEYS:
        return _KEYS[path]
    key = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(32))
        st = path.stat()
        if st.st_uid == os.getuid() and not st.st_mode & 0o077:  # ours, and nobody else's to read
            data = path.read_bytes()
            key = data if len(data) == 32 else None
    except OSError:
        key = None
    _KEYS[path] = key
    return key


def seal(body: str) -> str | None:
    """The text to keep for `body`; None when no key can be kept (keep nothing then)."""
    key = _key()
    if key is None:
        return None
    return json.dumps({"seal": hmac.new(key, body.encode(), hashlib.sha256).hexdigest(), "body": body})


def unseal(text: str) -> str | None:
    """The body of a kept file whose seal this user's key verifies; None for anything else."""
    key = _key()
    if key is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("seal"), str) or not isinstance(data.get("body"), str):
        return None
    want = hmac.new(key, data["body"].encode(), hashlib.sha256).hexdigest()
    return data["body"] if hmac.compare_digest(want, data["seal"]) else None


def read_sealed(path: Path) -> str | None:
    """The body of the kept file at `path` if its seal verifies; None if absent or not ours."""
    try:
        return unseal(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None


def keep_sealed(path: Path, body: str) -> None:
    """Keep `body` at `path`, sealed, replaced atomically; nothing when no key can be kept or
    the directory is read-only (that only costs speed)."""
    text = seal(body)
    if text is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass
