"""`tether kserve-init URI DEST`: KServe's storage-initializer contract for `tether://` URIs.

KServe runs a `ClusterStorageContainer`'s container as a pod's init container and appends two
arguments, the InferenceService's storageUri and the destination (`/mnt/models`); the serving
container starts only if it exits 0. So: resolve the URI (core/uri.py) to one release, exactly as
`tether deploy` does (deploy/source.py's plan_source: the environment branch decides, every check
of a deploy), materialise it with every byte verified (deploy/stage.py's build), and exit
non-zero, leaving nothing a runtime could load, on any mismatch or error.

Where things are built:

* The git repository is a scratch one (deploy/pod_source.py fetches only the refs the release
  needs), with its DVC cache, in a temporary directory next to DEST when DEST's parent is
  writable, else in the system's temporary directory (TMPDIR); it is removed at the end. Nothing
  is cached between pods: KServe's emptyDir starts empty anyway.
* The result is staged in a temporary directory on DEST's file system: a sibling of DEST
  (`.DEST.tether-staging-*`) when DEST's parent is writable and DEST is no mount point, then
  renamed into place (one rename when DEST is absent or empty); else (KServe mounts an emptyDir
  at /mnt/models, and /mnt is not the pod's to write) a hidden `.tether-staging-*` inside DEST,
  whose entries are renamed into DEST only once everything is verified.
* `DEST/tether-resolved.json` (release, commit, manifest digest, URI, layout, time) is written
  last, after everything verified: a pod says what it serves by that file.

Layouts (`?layout=` in the URI): `release`, the serving directory `tether deploy --target DEST`
makes (`current` -> `releases/<id>`, `deploy.log`), which `tether serve --target DEST` and
`tether verify --target DEST` accept; `kserve`, the model artifact's files (its path in dvc.yaml)
at DEST's root, for KServe's built-in runtimes.

A restart (DEST already holds what the URI resolves to, per its tether-resolved.json) re-verifies
every digest and changes nothing; anything else at DEST that kserve-init put there is replaced.
DEST holding files kserve-init did not put there is refused before anything is fetched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tether import __version__
from tether.adapters import nodecache
from tether.adapters.dvcstore import DvcStore
from tether.adapters.workspace import Workspace
from tether.clock import now_iso
from tether.core import paths
from tether.core.refs import release_dir_name
from tether.core.uri import ENVIRONMENT, TetherURI, parse_uri
from tether.deploy.pod_source import REMOTE_URL_VAR, open_source, use_pod_remote
from tether.deploy.source import plan_source, storage_errors
from tether.deploy.stage import build
from tether.deploy.verify import verify_target
from tether.digest import tree_sha256_of
from tether.errors import IntegrityError, NotFound, StorageError, TetherError, UsageError
from tether.registry.registry import Registry
from tether.registry.release import Release
from tether.servedir.layout import current_release, fsync_dir, log_event, resolve_target, rmtree, switch_current
from tether.servedir.stamp import manifest_digest

RESOLVED = "tether-resolved.json"
INSTALLING = ".tether-installing"  # in DEST while entries are renamed in: DEST's content is ours
STAGING = ".tether-staging-"
IGNORED = ("lost+found",)  # a fresh ext4 volume's own directory


def _resolve_release(ws: Workspace, uri: TetherURI) -> Release:
    """A release tag's release, trusted before a byte of it is fetched: the checks `tether
    deploy` makes of the release an environment names (plan_source), less the environment's."""
    from tether.registry import signing

    model = ws.model(uri.model)
    reg = Registry(ws, messages=False)
    rel = reg.by_tag(uri.name)
    if rel is not None and rel.unresolved:
        rel = reg.resolve_objects([rel], DvcStore(ws.root, node=nodecache.from_env(None)))[0]
    if rel is None or rel.manifest is None:
        raise IntegrityError(f"{uri.name} is not a complete release")
    rel.require_trusted("deployed")
    signing.enforce_release(ws, rel, None, signing.policy(ws, model))
    return rel


def resolve(ws: Workspace, uri: TetherURI) -> tuple[Release, str | None]:
    """(the release, the environment head's commit or None): an environment exactly as `tether
    deploy` resolves it, a release tag as itself."""
    if uri.kind == ENVIRONMENT:
        _reg, rel, ev = plan_source(ws, uri.model, uri.name, node=nodecache.from_env(None))
        return rel, ev.commit
    return _resolve_release(ws, uri), None


def _ours(dest: Path) -> list[Path]:
    """DEST's entries, when they are kserve-init's (or none); UsageError when DEST holds files
    kserve-init did not put there (a wrong DEST must not be emptied)."""
    for p in dest.parent.glob(f".{dest.name}{STAGING}*") if dest.parent.is_dir() else ():
        rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()  # a killed run's, beside DEST
    if not dest.exists():
        return []
    if not dest.is_dir() or dest.is_symlink():
        raise UsageError(f"{dest} is not a directory", hint="give kserve-init a directory to fill (KServe: /mnt/models)")
    entries = [p for p in dest.iterdir() if p.name not in IGNORED]
    for p in entries:
        if p.name.startswith(STAGING):  # a killed run's leftover
            rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    entries = [p for p in entries if not p.name.startswith(STAGING)]
    names = {p.name for p in entries}
    if entries and RESOLVED not in names and INSTALLING not in names:
        raise UsageError(f"{dest} holds files kserve-init did not put there ({', '.join(sorted(names)[:5])})",
                         hint="give an empty directory (KServe's /mnt/models is one); nothing was changed")
    return entries


def _clear(dest: Path) -> None:
    """Nothing loadable at DEST: its record first, then everything kserve-init put there."""
    try:
        entries = _ours(dest)
    except (OSError, TetherError):
        return
    for p in sorted(entries, key=lambda p: p.name != RESOLVED):
        if p.is_dir() and not p.is_symlink():
            rmtree(p)
        else:
            p.unlink()


def _record(uri_text: str, uri: TetherURI, rel: Release, env_commit: str | None) -> dict:
    return {"uri": uri_text, "layout": uri.layout, "environment": uri.name if uri.kind == ENVIRONMENT else None,
            "release": rel.tag, "commit": rel.commit, "environment_commit": env_commit,
            "tag_object": rel.tag_object, "manifest_sha256": manifest_digest(rel.manifest or {})}


_SAME = ("layout", "release", "commit", "tag_object", "manifest_sha256")


def _already(dest: Path, record: dict) -> bool:
    """DEST holds exactly this (its record says so and every digest checks out again)."""
    try:
        held = json.loads((dest / RESOLVED).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(held, dict) or any(held.get(k) != record[k] for k in _SAME) or (dest / INSTALLING).exists():
        return False
    try:
        if record["layout"] == "release":
            if current_release(dest) != release_dir_name(record["release"]):
                return False
            verify_target(dest)
            return True
        files = held.get("files")
        _tree, found = tree_sha256_of(dest, None)
        found.pop(RESOLVED, None)
        return isinstance(files, dict) and bool(files) and found == files
    except (OSError, TetherError):
        return False


def _serving_dir(ws: Workspace, rel: Release, record: dict, staging: Path, progress) -> None:
    """Layout `release`: what `tether deploy --target` makes, built the same way."""
    release_id = release_dir_name(rel.tag)
    (staging / "releases").mkdir()
    build(ws, rel, staging / "releases" / release_id, full=False, smoke=False, progress=progress,
          node=nodecache.from_env(None))
    switch_current(staging, release_id)
    log_event(staging, {"env": record["environment"], "from": None, "to": release_id, "release": rel.tag,
                        "commit": rel.commit, "outcome": "deployed", "manifest_sha256": record["manifest_sha256"],
                        "via": "kserve-init"})


def _artifact_files(ws: Workspace, rel: Release, record: dict, staging: Path, progress) -> None:
    """Layout `kserve`: the release built and verified aside, then its model artifact's files
    (a file, or a directory's contents) renamed to the staging root."""
    aside = staging / ".tether-build"
    built = aside / release_dir_name(rel.tag)
    build(ws, rel, built, full=False, smoke=False, progress=progress, node=nodecache.from_env(None))
    artifact = paths.inside(built, ws.models[rel.name.model].path, "artifact path")
    if artifact.is_dir() and not artifact.is_symlink():
        for child in sorted(artifact.iterdir()):
            os.rename(child, staging / child.name)
    elif artifact.is_file() and not artifact.is_symlink():
        os.rename(artifact, staging / artifact.name)
    else:
        raise NotFound(f"{rel.tag}'s model artifact {ws.models[rel.name.model].path} is not in the release")
    rmtree(aside)
    _tree, files = tree_sha256_of(staging, None)
    record["files"] = files


def _staging_dir(dest: Path) -> Path:
    """On DEST's file system: a sibling when DEST's parent is writable and DEST no mount point,
    else inside DEST (see the module doc)."""
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)  # as `tether deploy` makes its --target
    except OSError:
        pass
    if os.access(parent, os.W_OK) and not (dest.exists() and os.path.ismount(dest)):
        return Path(tempfile.mkdtemp(prefix=f".{dest.name}{STAGING}", dir=parent))
    dest.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=STAGING, dir=dest))


def _install(staging: Path, dest: Path) -> None:
    """Everything in `staging`, verified and recorded, becomes DEST's content: by one rename when
    possible; else entry by entry, tether-resolved.json last, under the INSTALLING marker."""
    if staging.parent != dest:
        if not dest.exists() or not any(dest.iterdir()):
            os.rename(staging, dest)  # rename(2) replaces an empty directory
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}{STAGING}old-", dir=dest.parent))
            os.rename(dest, old / "was")
            os.rename(staging, dest)
            rmtree(old)
        fsync_dir(dest.parent)
        return
    (dest / INSTALLING).touch()
    for p in dest.iterdir():
        if p.name not in (INSTALLING, staging.name, *IGNORED):
            rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == RESOLVED):
        os.rename(entry, dest / entry.name)
    staging.rmdir()
    (dest / INSTALLING).unlink()
    fsync_dir(dest)


def _materialise(ws: Workspace, uri: TetherURI, rel: Release, record: dict, dest: Path, progress) -> None:
    staging = _staging_dir(dest)
    try:
        with storage_errors():
            fill = _serving_dir if uri.layout == "release" else _artifact_files
            fill(ws, rel, record, staging, progress)
        record["time"] = now_iso()
        record["tether"] = __version__
        (staging / RESOLVED).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")  # last
        _install(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _naming_remote(where: str):
    """A storage failure names the DVC remote the pod used, and how a pod names another."""
    try:
        yield
    except StorageError as exc:
        if where not in exc.message:
            exc.message = f"{exc.message} (DVC remote {where})"
        exc.hint = "; ".join(filter(None, [exc.hint, f"a pod reads the release's own remote unless it sets "
                                                      f"{REMOTE_URL_VAR} (and AWS_ENDPOINT_URL or S3_ENDPOINT)"]))
        raise


def _scratch_parent(dest: Path) -> str | None:
    return str(dest.parent) if os.access(dest.parent, os.W_OK) else None


def kserve_init(uri_text: str, dest_arg: str, *, cwd: str | Path = ".", progress=None) -> dict:
    """Fill DEST with what the `tether://` URI resolves to (see the module doc). Returns the
    record written to DEST/tether-resolved.json, with "outcome": "initialised" or "verified" (a
    restart: DEST already held it)."""
    uri = parse_uri(uri_text)
    dest = resolve_target(dest_arg, cwd)
    _ours(dest)  # refuse a DEST with foreign files before anything is fetched
    done = False
    try:
        with tempfile.TemporaryDirectory(prefix=f".{dest.name}{STAGING}repo-", dir=_scratch_parent(dest)) as tmp:
            if progress:
                progress(f"fetching {uri.name} from {uri.git_url} …")
            ws = open_source(Path(tmp) / "repo", uri)
            with storage_errors():
                where = use_pod_remote(ws)
            with _naming_remote(where):
                with storage_errors():
                    rel, env_commit = resolve(ws, uri)
                record = _record(uri_text, uri, rel, env_commit)
                if _already(dest, record):
                    done = True
                    return {**json.loads((dest / RESOLVED).read_text()), "outcome": "verified"}
                _materialise(ws, uri, rel, record, dest, progress)
        done = True
        return {**record, "outcome": "initialised"}
    finally:
        if not done:
            _clear(dest)
