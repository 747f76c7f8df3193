"""DVC adapter: pipeline status, the local cache and the remote, addressed by md5.

`DvcStore` is what callers use: the repository and its cache (`dvccache.DvcCache`) with the
remote's transfers here. We talk to the object databases directly: `dvc push`/`pull` report a
missing object only as a warning and exit 0, while a release or a deploy must know.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.adapters.dvccache import MD5, DvcCache, quiet, is_dir, parse_listing
from tether import extras
from tether.errors import StorageError, UsageError

if TYPE_CHECKING:
    from tether.adapters.nodecache import NodeCache


def _hash_info(md5: str):
    from dvc_data.hashfile.hash_info import HashInfo

    return HashInfo("md5", md5)


class DvcStore(DvcCache):
    def __init__(self, root: str | Path, remote: str | None = None, node: NodeCache | None = None) -> None:
        super().__init__(root)
        self.remote_name = remote
        self._remote_odb: Any = None
        self.node = node  # a host's shared cache (adapters/nodecache.py): objects come through it

    def from_node(self, md5: str) -> Path:
        """Object `md5` through the node cache (fetched from the remote once per host, verified
        by its md5 before it is published and each time it is handed out), linked (else copied)
        into this repository's cache too, so DVC and dir_entries find it. The node cache's path."""
        assert self.node is not None
        path = self.node.get(md5, lambda: self.open_remote(md5))
        if not self.cache_path(md5).exists() and not self.adopt(md5, path):
            import shutil

            dest = self.cache_path(md5)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f"{dest.name}.tether-{os.getpid()}")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        return path

    def remote(self):
        from dvc.config import NoRemoteError

        try:
            return self.repo.cloud.get_remote_odb(self.remote_name, command="tether")
        except NoRemoteError:
            raise StorageError(
                "no DVC remote is configured",
                hint="add one: dvc remote add -d storage s3://bucket/path (see docs/s3.md)",
            ) from None
        except Exception as exc:  # a malformed or unreachable remote configuration
            needs = _missing_filesystem(exc)
            if needs is not None:
                raise needs from None
            raise StorageError(f"cannot open the DVC remote: {exc}") from exc

    def remote_listing(self, odb, md5: str) -> list[dict] | None:
        path = odb.oid_to_path(md5)
        try:
            with quiet():
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
        return self.remote_listing(self.remote(), md5)

    def remote_settings(self) -> tuple[str, dict]:
        """(name, settings) of the remote this store uses, as DVC resolved them from every config
        level (a local path made absolute), so another repository can use the same remote."""
        config = self.repo.config
        name = self.remote_name or (config.get("core") or {}).get("remote")
        remotes = config.get("remote") or {}
        if not name or name not in remotes:
            raise StorageError("no DVC remote is configured",
                               hint="add one: dvc remote add -d storage s3://bucket/path (see docs/s3.md)")
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

    def on_node(self, md5: str) -> bool:
        """Object `md5` (a `.dir`: its listing and every file it lists) is in the node cache; a
        listing found there is verified and linked into this repository's cache (dir_entries
        reads it). The files are verified when they are handed out (NodeCache.get)."""
        node = self.node
        if node is None:
            return False
        if not is_dir(md5):
            return node.has(md5)
        if not self.cache_path(md5).exists():
            if not node.has(md5):
                return False
            self.from_node(md5)
        return all(self.cache_path(c["md5"]).exists() or node.has(c["md5"]) for c in self.dir_entries(md5))

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
                listing = self.local_listing(m)
                if listing is not None:
                    children[m] = {c["md5"] for c in listing}
        asked = wanted.union(*children.values())
        present = self._oids_exist(odb, asked)
        remote_read = [m for m in sorted(wanted) if is_dir(m) and m not in children and m in present]
        for m in remote_read:
            listing = self.remote_listing(odb, m)
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
            with quiet():
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
                listing = self.local_listing(m)
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
        if self.node is not None:
            for m in sorted(dirs):
                self.from_node(m)
                files.update(c["md5"] for c in self.dir_entries(m))
            for m in sorted(files):
                self.from_node(m)
            return
        remote = self.fetch_listings(dirs)
        for m in sorted(dirs):
            listing = self.local_listing(m)
            if listing is not None:  # a listing the remote lacks too: the caller's check names it
                files.update(c["md5"] for c in listing)
        self._transfer(remote, self.cache, {m for m in files if not self.cache_path(m).exists()}, "fetch from")

    def fetch_listings(self, dirs: Iterable[str]):
        """The `.dir` listings into the cache (they say which files to get). Each is read and
        validated before it may enter the cache (DVC's own transfer loads it as a tree, and
        would fail on a malformed one with a bare assertion). Returns the remote's odb."""
        remote = self.remote()
        new_dirs = {m for m in dirs if not self.cache_path(m).exists()}
        if self.node is not None:
            for m in sorted(new_dirs):
                self.from_node(m)
            return remote
        for m in sorted(new_dirs):
            if self.remote_listing(remote, m) is None:
                new_dirs.discard(m)  # absent there too: the caller's check names it
        self._transfer(remote, self.cache, new_dirs, "fetch from")
        return remote

    def open_remote(self, md5: str):
        """A file object reading one object from the remote, in blocks (never whole)."""
        if self._remote_odb is None:
            self._remote_odb = self.remote()
        odb = self._remote_odb
        try:
            with quiet():
                return odb.fs.open(odb.oid_to_path(md5), "rb")
        except FileNotFoundError:
            raise StorageError(f"the DVC remote lost object {md5} while it was being fetched",
                               hint="push it again from a workspace that has it: dvc push") from None
        except Exception as exc:
            raise StorageError(f"the DVC remote is unreachable: {_short(exc)}",
                               hint="check the remote's URL, endpoint and credentials (dvc remote list)") from exc

    def _transfer(self, src, dest, md5s: Iterable[str], verb: str) -> None:
        from dvc_data.hashfile.transfer import transfer

        ids = {_hash_info(m) for m in md5s}
        if not ids:
            return
        try:
            with quiet():
                result = transfer(src, dest, ids, jobs=4, verify=False)
        except Exception as exc:
            raise StorageError(f"could not {verb} the DVC remote: {_short(exc)}",
                               hint="check that the remote is reachable and your credentials") from exc
        if result.failed:
            names = ", ".join(sorted(str(h.value) for h in result.failed)[:5])
            raise StorageError(f"could not {verb} the DVC remote {len(result.failed)} object(s): {names}")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


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


def _missing_filesystem(exc: Exception) -> UsageError | None:
    """DVC's "s3 is supported, but requires 'dvc-s3' to be installed" (an ImportError) or its
    RemoteMissingDepsError, as the extra that installs the filesystem: tether's own `s3`, else
    the DVC plugin DVC names."""
    import re

    from dvc.fs import RemoteMissingDepsError

    if isinstance(exc, RemoteMissingDepsError):
        protocol, package = str(exc.protocol), ", ".join(exc.missing_deps) or f"dvc-{exc.protocol}"
    elif isinstance(exc, ImportError) and (m := re.match(r"(\w+) is supported, but requires '([\w.-]+)'", str(exc))):
        protocol, package = m.group(1), m.group(2)
    else:
        return None
    if protocol == "s3":
        return UsageError(f"the DVC remote is on S3, and tether's s3 extra ({package}) is not installed",
                          hint=extras.install_hint("s3"))
    return UsageError(f"the DVC remote is on {protocol}, and DVC's support for it ({package}) is not installed",
                      hint=f"pip install {package} beside tether")


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
        with quiet():
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
        if MD5.match(oid.removesuffix(".dir")):
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
            with quiet():
                odb.fs.remove([odb.oid_to_path(o) for o in part])
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise unreachable(store, exc, f"; {done} of {len(oids)} object(s) were deleted before it failed") from exc
        done += len(part)
        if on_batch is not None:
            on_batch(done, len(oids))
    return done
