"""DVC adapter: pipeline status, the local cache and the remote, addressed by md5.

dvc is imported here only, lazily, so read commands (list, show, history) never pay for it.
We talk to the object databases directly: `dvc push`/`pull` report a missing object only as a
warning and exit 0, while a release or a deploy must know.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable
from pathlib import Path

from tether.errors import StorageError, UsageError


def _hash_info(md5: str):
    from dvc_data.hashfile.hash_info import HashInfo

    return HashInfo("md5", md5)


class DvcStore:
    def __init__(self, root: str | Path, remote: str | None = None) -> None:
        self.root = Path(root)
        self.remote_name = remote
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
        with _quiet():
            return self.repo.status()

    # -- object databases -----------------------------------------------------------------
    @property
    def cache(self):
        return self.repo.cache.local

    def remote(self):
        from dvc.config import NoRemoteError

        try:
            return self.repo.cloud.get_remote_odb(self.remote_name, command="tether")
        except NoRemoteError:
            raise StorageError(
                "no DVC remote is configured",
                hint="add one: dvc remote add -d storage s3://bucket/path (see README, 'S3')",
            ) from None
        except Exception as exc:  # a malformed or unreachable remote configuration
            raise StorageError(f"cannot open the DVC remote: {exc}") from exc

    def cache_path(self, md5: str) -> Path:
        return self._cache_root() / md5[:2] / md5[2:]

    def _cache_root(self) -> Path:
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

    def missing_in_cache(self, md5s: Iterable[str]) -> set[str]:
        return {m for m in set(md5s) if not self.cache_path(m).exists()}

    def missing_on_remote(self, md5s: Iterable[str]) -> set[str]:
        wanted = set(md5s)
        if not wanted:
            return set()
        odb = self.remote()
        try:
            with _quiet():
                present = set(odb.oids_exist(sorted(wanted)))
        except Exception as exc:
            raise StorageError(f"the DVC remote is unreachable: {_short(exc)}",
                               hint="check the remote's URL, endpoint and credentials (dvc remote list)") from exc
        return wanted - present

    def push(self, md5s: Iterable[str]) -> None:
        self._transfer(self.cache, self.remote(), md5s, "push to")

    def fetch(self, md5s: Iterable[str]) -> None:
        """Into the local cache. Not re-hashed here: every byte is checked against the
        manifest's SHA-256 when it is materialised, and hashing twice doubled rollback time."""
        self._transfer(self.remote(), self.cache, md5s, "fetch from")

    def _transfer(self, src, dest, md5s: Iterable[str], verb: str) -> None:
        from dvc_data.hashfile.transfer import transfer

        ids = {_hash_info(m) for m in md5s}
        if not ids:
            return
        try:
            with _quiet():
                result = transfer(src, dest, ids, jobs=4, verify=False)
        except Exception as exc:
            raise StorageError(f"could not {verb} the DVC remote: {_short(exc)}",
                               hint="check that the remote is reachable and your credentials") from exc
        if result.failed:
            names = ", ".join(sorted(h.value for h in result.failed)[:5])
            raise StorageError(f"could not {verb} the DVC remote {len(result.failed)} object(s): {names}")


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


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
