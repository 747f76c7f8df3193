"""DVC adapter: pipeline status, the local cache and the remote, addressed by md5.

dvc is imported here only, lazily, so read commands (list, show, history) never pay for it.
We talk to the object databases directly: `dvc push`/`pull` report a missing object only as a
warning and exit 0, while a release or a deploy must know.
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
from typing import Any

from tether.errors import IntegrityError, StorageError, UsageError

_MD5 = re.compile(r"^[0-9a-f]{32}$")


def _hash_info(md5: str):
    from dvc_data.hashfile.hash_info import HashInfo

    return HashInfo("md5", md5)


class DvcStore:
    def __init__(self, root: str | Path, remote: str | None = None) -> None:
        self.root = Path(root)
        self.remote_name = remote
        self._repo = None
        self._root_cache: Path | None = None
        self._remote_odb: Any = None

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

    def commit_stage(self, stage: str) -> None:
        """`dvc commit -f STAGE`: record the stage's current deps and outs in dvc.lock without
        running it (only that stage, not its upstream)."""
        # DVC resolves a bare stage name against the process's cwd: name dvc.yaml absolutely.
        with _quiet():
            self.repo.commit(f"{(self.root / 'dvc.yaml').resolve()}:{stage}", force=True)

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

    # -- directory outputs ----------------------------------------------------------------
    # A directory output is one `<md5>.dir` object: a JSON listing [{"md5", "relpath"}, ...] of
    # the files inside, each its own object. Every storage operation below works on the
    # listing AND the files it names: the listing alone restores nothing.
    def dir_entries(self, md5: str) -> list[dict]:
        """The validated listing of a `.dir` object in the local cache. FileNotFoundError
        when the cache lacks it; IntegrityError when it is not a well-formed listing."""
        path = self.cache_path(md5)
        return parse_listing(path.read_bytes(), md5, str(path))

    def _local_listing(self, md5: str) -> list[dict] | None:
        try:
            return self.dir_entries(md5)
        except FileNotFoundError:
            return None

    def _remote_listing(self, odb, md5: str) -> list[dict] | None:
        path = odb.oid_to_path(md5)
        try:
            with _quiet():
                raw = odb.fs.cat_file(path)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StorageError(f"the DVC remote is unreachable: {_short(exc)}",
                               hint="check the remote's URL, endpoint and credentials (dvc remote list)") from exc
        return parse_listing(raw, md5, f"the DVC remote's {path}")

    def remote_dir_entries(self, md5: str) -> list[dict] | None:
        """The validated listing of a `.dir` object on the remote, without fetching its files;
        None when the remote lacks it."""
        return self._remote_listing(self.remote(), md5)

    def remote_settings(self) -> tuple[str, dict]:
        """(name, settings) of the remote this store uses, as DVC resolved them from every config
        level (a local path made absolute), so another repository can use the same remote."""
        config = self.repo.config
        name = self.remote_name or (config.get("core") or {}).get("remote")
        remotes = config.get("remote") or {}
        if not name or name not in remotes:
            raise StorageError("no DVC remote is configured",
                               hint="add one: dvc remote add -d storage s3://bucket/path (see README, 'S3')")
        return name, {k: (str(v) if isinstance(v, str) else v) for k, v in remotes[name].items()}

    def use_remote(self, name: str, settings: dict, own_cache: bool = False) -> None:
        """Make `name` (with `settings`) this repository's default remote, in its
        `.dvc/config.local` (never committed). `own_cache`: the cache is `.dvc/cache` inside this
        repository, whatever its committed config says (a team's shared cache directory stays
        untouched by a scratch clone)."""
        with self.repo.config.edit("local") as conf:
            conf.setdefault("remote", {})[name] = dict(settings)
            conf.setdefault("core", {})["remote"] = name
            if own_cache:
                conf.setdefault("cache", {})["dir"] = str(self.root.resolve() / ".dvc" / "cache")
        self.close()
        self.remote_name = name
        self._root_cache = None

    def missing_in_cache(self, md5s: Iterable[str]) -> set[str]:
        """A `.dir` object is missing when its listing or any file it lists is."""
        missing = set()
        for m in set(md5s):
            if not self.cache_path(m).exists():
                missing.add(m)
            elif is_dir(m) and any(not self.cache_path(c["md5"]).exists() for c in self.dir_entries(m)):
                missing.add(m)
        return missing

    def missing_on_remote(self, md5s: Iterable[str]) -> set[str]:
        """The md5s (as given) the remote cannot restore. A `.dir` counts as missing when its
        listing or any file it lists is absent there. One batched existence query for every
        object whose listing is in the local cache; a second one only for directories whose
        listing has to be read from the remote."""
        wanted = set(md5s)
        if not wanted:
            return set()
        odb = self.remote()
        children: dict[str, set[str]] = {}
        for m in sorted(wanted):
            if is_dir(m):
                listing = self._local_listing(m)
                if listing is not None:
                    children[m] = {c["md5"] for c in listing}
        asked = wanted.union(*children.values())
        present = self._oids_exist(odb, asked)
        remote_read = [m for m in sorted(wanted) if is_dir(m) and m not in children and m in present]
        for m in remote_read:
            listing = self._remote_listing(odb, m)
            if listing is None:  # deleted since we asked
                present.discard(m)
            else:
                children[m] = {c["md5"] for c in listing}
        more = set().union(*(children[m] for m in remote_read if m in children)) - asked
        if more:
            present |= self._oids_exist(odb, more)
        return {m for m in wanted if m not in present or not children.get(m, set()) <= present}

    def _oids_exist(self, odb, oids: set[str]) -> set[str]:
        if not oids:
            return set()
        try:
            with _quiet():
                return set(odb.oids_exist(sorted(oids)))
        except Exception as exc:
            raise StorageError(f"the DVC remote is unreachable: {_short(exc)}",
                               hint="check the remote's URL, endpoint and credentials (dvc remote list)") from exc

    def push(self, md5s: Iterable[str]) -> None:
        """Every object, and for a `.dir` its listing plus every file it lists (the listing is
        uploaded after its files, so the remote never holds a listing of files it lacks)."""
        wanted = set(md5s)
        ids = set(wanted)
        for m in sorted(wanted):
            if is_dir(m):
                listing = self._local_listing(m)
                if listing is None:
                    raise StorageError(
                        f"cannot push directory object {m}: its listing is not in the local cache "
                        f"({self.cache_path(m)})",
                        hint="run `dvc repro` or `dvc pull` in this workspace first, so the cache holds the directory",
                    )
                ids.update(c["md5"] for c in listing)
        self._transfer(self.cache, self.remote(), ids, "push to")

    def fetch(self, md5s: Iterable[str]) -> None:
        """Into the local cache, a `.dir` with every file it lists. Not re-hashed here: every
        byte is checked against the manifest's SHA-256 when it is materialised, and hashing
        twice doubled rollback time."""
        wanted = set(md5s)
        dirs = {m for m in wanted if is_dir(m)}
        files = wanted - dirs
        remote = self.fetch_listings(dirs)
        for m in sorted(dirs):
            listing = self._local_listing(m)
            if listing is not None:  # a listing the remote lacks too: the caller's check names it
                files.update(c["md5"] for c in listing)
        self._transfer(remote, self.cache, {m for m in files if not self.cache_path(m).exists()}, "fetch from")

    def fetch_listings(self, dirs: Iterable[str]):
        """The `.dir` listings into the cache (they say which files to get). Each is read and
        validated before it may enter the cache (DVC's own transfer loads it as a tree, and
        would fail on a malformed one with a bare assertion). Returns the remote's odb."""
        remote = self.remote()
        new_dirs = {m for m in dirs if not self.cache_path(m).exists()}
        for m in sorted(new_dirs):
            if self._remote_listing(remote, m) is None:
                new_dirs.discard(m)  # absent there too: the caller's check names it
        self._transfer(remote, self.cache, new_dirs, "fetch from")
        return remote

    def open_remote(self, md5: str):
        """A file object reading one object from the remote, in blocks (never whole)."""
        if self._remote_odb is None:
            self._remote_odb = self.remote()
        odb = self._remote_odb
        try:
            with _quiet():
                return odb.fs.open(odb.oid_to_path(md5), "rb")
        except FileNotFoundError:
            raise StorageError(f"the DVC remote lost object {md5} while it was being fetched",
                               hint="push it again from a workspace that has it: dvc push") from None
        except Exception as exc:
            raise StorageError(f"the DVC remote is unreachable: {_short(exc)}",
                               hint="check the remote's URL, endpoint and credentials (dvc remote list)") from exc

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
            names = ", ".join(sorted(str(h.value) for h in result.failed)[:5])
            raise StorageError(f"could not {verb} the DVC remote {len(result.failed)} object(s): {names}")


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
        if not _MD5.match(child):
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


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# -- garbage collection and publishing (gc.py, publish.py) --------------------------------------
# Listing, dating and deleting objects of a remote, each failure a StorageError naming where
# the remote is (exit 7), never a bare EndpointConnectionError.
def remote_where(store: DvcStore) -> str:
    """`s3://bucket/path (endpoint http://host:port)`: what to name when the remote fails."""
    try:
        name, settings = store.remote_settings()
    except Exception:  # noqa: BLE001 - naming the remote must never be the error
        return "the DVC remote"
    where = f"'{name}' at {settings.get('url', '?')}"
    if settings.get("endpointurl"):
        where += f" (endpoint {settings['endpointurl']})"
    return where


def unreachable(store: DvcStore, exc: Exception, done: str = "") -> StorageError:
    return StorageError(f"the DVC remote {remote_where(store)} is unreachable: {_short(exc)}" + done,
                        hint="check the endpoint, the network and your credentials (dvc remote list), then run again")


def _age_of(info: dict) -> float | None:
    for key in ("LastModified", "mtime", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None


def remote_objects(store: DvcStore, odb) -> dict[str, float | None]:
    """{md5: modification time (epoch seconds; None when the remote does not say)} of every
    object on the remote, in one listing."""
    try:
        with _quiet():
            found = odb.fs.fs.find(odb.path, detail=True)
            if not isinstance(found, dict):  # a filesystem that lists names only (DVC's local one)
                found = {path: odb.fs.info(path) for path in found}
    except FileNotFoundError:
        return {}
    except Exception as exc:
        raise unreachable(store, exc, "; nothing was deleted") from exc
    out: dict[str, float | None] = {}
    for path, info in (found or {}).items():
        if isinstance(info, dict) and info.get("type") == "directory":
            continue
        try:
            oid = odb.path_to_oid(path)
        except ValueError:
            continue
        if _MD5.match(oid.removesuffix(".dir")):
            out[oid] = _age_of(info if isinstance(info, dict) else {})
    return out


def cache_objects(store: DvcStore) -> dict[str, float | None]:
    """{md5: modification time} of every object in the local cache."""
    out: dict[str, float | None] = {}
    for oid in store.cache.all():
        try:
            out[oid] = os.stat(store.cache.oid_to_path(oid)).st_mtime
        except OSError:
            out[oid] = None
    return out


def delete_remote(store: DvcStore, odb, oids: list[str], batch: int = 100, on_batch=None) -> int:
    """Delete in batches; `on_batch(done, total)` after each, so a killed gc has said how far it
    got. Returns how many were deleted."""
    done = 0
    for i in range(0, len(oids), batch):
        part = oids[i:i + batch]
        try:
            with _quiet():
                odb.fs.remove([odb.oid_to_path(o) for o in part])
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise unreachable(store, exc, f"; {done} of {len(oids)} object(s) were deleted before it failed") from exc
        done += len(part)
        if on_batch is not None:
            on_batch(done, len(oids))
    return done
