"""Put a release's tuple into a directory: its git tree plus its DVC outputs, every byte
checked against the manifest. Shared by deploy, checkout, verify and the smoke test."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

from tether.cmd import run_bytes
from tether.digest import _BLOCK, sha256_file
from tether.dvcstore import DvcStore
from tether.errors import IntegrityError, StorageError
from tether.gitrepo import Git
from tether.manifest import dvc_objects


def needed(manifest: dict, full: bool = False, data_paths: tuple[str, ...] = ()) -> list[dict]:
    """The DVC entries to materialise: the model's own outputs, plus all data with `full`, or
    just the named data files (e.g. the frozen eval slice for a smoke test)."""
    weights = {e["path"] for e in manifest["components"]["weights"]}
    return [e for e in dvc_objects(manifest) if e["path"] in weights or full or e["path"] in data_paths]


def ensure_cached(store: DvcStore, entries: list[dict], progress=None) -> None:
    """Every object in the local cache, fetched from the remote if need be. Raises
    StorageError naming the files the remote does not have, before anything else is touched."""
    by_md5 = {e["md5"]: e["path"] for e in entries if e.get("md5")}
    missing = store.missing_in_cache(by_md5)
    if missing:
        if progress:
            progress(f"fetching {len(missing)} object(s) from the DVC remote …")
        absent = store.missing_on_remote(missing)
        if absent:
            names = ", ".join(sorted(by_md5[m] for m in absent))
            raise StorageError(f"the DVC remote lacks {len(absent)} object(s) this release needs: {names}",
                               hint="push them from a workspace that has them: dvc push")
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


def dir_listing(store: DvcStore, md5: str) -> list[dict]:
    """The validated listing (relative paths only, no `..`): paths from storage are untrusted."""
    return store.dir_entries(md5)


def write_git_tree(git: Git, commit: str, dest: Path) -> None:
    data = run_bytes(["git", "archive", "--format=tar", commit], git.root, b"")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def _copy(src: Path, dst: Path, sha256: str | None = None, name: str = "", md5: str | None = None) -> None:
    """A copy, never a hardlink: the cache must not change if someone edits the served file.
    With a digest, the bytes are hashed as they are written, in the same pass, and a mismatch
    refuses the file before anything can use it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tether-tmp")
    if sha256 is None and md5 is None:
        shutil.copyfile(src, tmp)
    else:
        # without a recorded sha256 (files inside directory outputs, releases tagged by hand)
        # the bytes are checked against DVC's own md5 from dvc.lock or the directory listing
        h = hashlib.sha256() if sha256 else hashlib.md5()
        sha256 = sha256 or md5
        buf = bytearray(_BLOCK)
        view = memoryview(buf)
        with open(src, "rb", buffering=0) as fin, open(tmp, "wb", buffering=0) as fout:
            while n := fin.readinto(buf):
                h.update(view[:n])
                fout.write(view[:n])
        if h.hexdigest() != sha256:
            tmp.unlink()
            raise IntegrityError(
                f"{name or dst.name} does not match the manifest ({h.name} {h.hexdigest()[:16]}…, expected {sha256[:16]}…)",
                hint=f"the cache object {src} is corrupt: delete it and run again to fetch a good copy",
            )
    os.chmod(tmp, 0o444)
    os.replace(tmp, dst)


def place_outputs(store: DvcStore, entries: list[dict], dest: Path) -> None:
    """Copy every output from the cache into `dest`, verifying each file's SHA-256 on the way."""
    for e in entries:
        md5 = e["md5"]
        target = dest / e["path"]
        if md5.endswith(".dir"):
            for child in dir_listing(store, md5):
                _copy(store.cache_path(child["md5"]), target / child["relpath"], None,
                      f"{e['path']}/{child['relpath']}", md5=child["md5"])
        else:
            _copy(store.cache_path(md5), target, e.get("sha256"), e["path"], md5=md5)


def verify_outputs(entries: list[dict], root: Path) -> None:
    """Recompute every SHA-256 against the manifest; the first mismatch names the file."""
    for e in entries:
        path = root / e["path"]
        if not path.exists():
            raise IntegrityError(f"{e['path']} is missing from {root}")
        if e.get("sha256") and path.is_file():
            actual = sha256_file(path)
            if actual != e["sha256"]:
                raise IntegrityError(
                    f"{e['path']} does not match the manifest (sha256 {actual[:16]}…, expected {e['sha256'][:16]}…)",
                    hint="the file or a cache object was modified; remove it and fetch again",
                )


def materialise(git: Git, store: DvcStore, manifest: dict, dest: Path, entries: list[dict]) -> None:
    """Into `dest` (which must not exist): git tree, DVC outputs, each verified as it is copied."""
    dest.mkdir(parents=True)
    write_git_tree(git, manifest["commit"], dest)
    place_outputs(store, entries, dest)
