"""The DVC repository, opened lazily, with its pipeline status and its local cache addressed by
md5 (`dvcstore.DvcStore` adds the remote).

dvc is imported here and in dvcstore only, lazily, so read commands (list, show, history) never
pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from tether.errors import IntegrityError, UsageError

MD5 = re.compile(r"^[0-9a-f]{32}$")


class DvcCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._repo = None
        self._root_cache: Path | None = None

    @property
    def repo(self):
        if self._repo is None:
            # DVC logs progress and warnings through its own handlers; the CLI prints ours.
            logging.getLogger("dvc").setLevel(logging.ERROR)
            from dvc.exceptions import NotDvcRepoError
            from dvc.repo import Repo

            _repair_rwlock(self.root / ".dvc" / "tmp" / "rwlock")
            try:
                self._repo = Repo(str(self.root))
            except NotDvcRepoError:
                raise UsageError(
                    f"{self.root} is not a DVC repository",
                    hint="run `dvc init` and commit .dvc/ first",
                ) from None
        return self._repo

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    # -- pipeline -------------------------------------------------------------------------
    def changed_stages(self) -> dict:
        """`dvc status`: {stage: [changes]} for every stage out of sync with dvc.lock."""
        with quiet():
            return self.repo.status()

    def commit_stage(self, stage: str) -> None:
        """`dvc commit -f STAGE`: record the stage's current deps and outs in dvc.lock without
        running it (only that stage, not its upstream)."""
        # DVC resolves a bare stage name against the process's cwd: name dvc.yaml absolutely.
        with quiet():
            self.repo.commit(f"{(self.root / 'dvc.yaml').resolve()}:{stage}", force=True)

    # -- the local cache ------------------------------------------------------------------
    @property
    def cache(self):
        return self.repo.cache.local

    def cache_path(self, md5: str) -> Path:
        return self.cache_root() / md5[:2] / md5[2:]

    def cache_root(self) -> Path:
        """DVC 3's cache layout, `<cache dir>/files/md5/ab/cdef…`, without importing dvc (a
        second on a cold start, most of a cache-only rollback). A repository that configures
        its cache in any way asks DVC itself."""
        if self._root_cache is None:
            configs = [self.root / ".dvc" / name for name in ("config", "config.local")]
            if any(p.exists() and "[cache]" in p.read_text() for p in configs):
                self._root_cache = Path(self.cache.oid_to_path("00" * 16)).parent.parent
            else:
                self._root_cache = self.root / ".dvc" / "cache" / "files" / "md5"
        return self._root_cache

    # -- directory outputs ----------------------------------------------------------------
    # A directory output is one `<md5>.dir` object: a JSON listing [{"md5", "relpath"}, ...] of
    # the files inside, each its own object. Every storage operation below works on the
    # listing AND the files it names: the listing alone restores nothing.
    def dir_entries(self, md5: str) -> list[dict]:
        """The validated listing of a `.dir` object in the local cache. FileNotFoundError
        when the cache lacks it; IntegrityError when it is not a well-formed listing."""
        path = self.cache_path(md5)
        return parse_listing(path.read_bytes(), md5, str(path))

    def local_listing(self, md5: str) -> list[dict] | None:
        try:
            return self.dir_entries(md5)
        except FileNotFoundError:
            return None

    def missing_in_cache(self, md5s: Iterable[str]) -> set[str]:
        """A `.dir` object is missing when its listing or any file it lists is."""
        missing = set()
        for m in set(md5s):
            if not self.cache_path(m).exists():
                missing.add(m)
            elif is_dir(m) and any(not self.cache_path(c["md5"]).exists() for c in self.dir_entries(m)):
                missing.add(m)
        return missing

    def adopt(self, md5: str, path: Path) -> bool:
        """Hard-link a verified, read-only file into the cache as object `md5` (no byte copied),
        unless the cache has it; False when the filesystem refuses (the cache on another device)."""
        dest = self.cache_path(md5)
        if dest.exists():
            return True
        tmp = dest.with_name(f"{dest.name}.tether-{os.getpid()}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, tmp)
            os.replace(tmp, dest)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True


def is_dir(md5: str) -> bool:
    return md5.endswith(".dir")


def parse_listing(raw: bytes | str, md5: str, where: str) -> list[dict]:
    """A `.dir` object's listing, validated: it comes from storage, so it is untrusted. Each
    entry needs a hex md5 (it becomes a cache path) and a relative path that stays inside the
    directory (it becomes a file path when the output is restored)."""
    def bad(why: str) -> IntegrityError:
        return IntegrityError(f"directory object {md5} is malformed ({why}): {where}",
                              hint="delete the corrupt object and fetch or push it again from a good copy")

    if isinstance(raw, str):
        raw = raw.encode()
    if hashlib.md5(raw).hexdigest() != md5.removesuffix(".dir"):
        raise bad("its content does not hash to its name")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("not JSON") from None
    if not isinstance(data, list):
        raise bad("not a JSON list")
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise bad(f"entry {i} is not an object")
        child, rel = entry.get("md5"), entry.get("relpath")
        if not isinstance(child, str) or not isinstance(rel, str):
            raise bad(f"entry {i} lacks a string md5 and relpath")
        if not MD5.match(child):
            raise bad(f"entry {i} has md5 {child[:40]!r}")
        parts = rel.replace("\\", "/").split("/")
        if not rel or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) or ".." in parts or "" in parts:
            raise bad(f"entry {i} has unsafe relpath {rel[:80]!r}")
    return data


def _repair_rwlock(path: Path) -> None:
    """DVC rewrites .dvc/tmp/rwlock in place; a process killed mid-write (kill -9 of any DVC
    command, ours included) leaves it empty and every later DVC command fails until someone
    deletes it, as DVC's own message advises. A file that does not parse records no operation
    anyone could still be running, so we remove it for the user."""
    import json

    try:
        json.loads(path.read_text() or "!")
    except FileNotFoundError:
        return
    except (ValueError, OSError):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
