"""tether.api.load, up to the model: the release a REF names, trusted, then materialised into
the load cache (or an already verified copy there reused) with every byte verified.

The load cache is laid out like a serving directory (tether.deploy.command): `releases/<id>/`
holds a release's git tree and model outputs with its stamp (tether.servedir.stamp), built by
the very staging step deploy uses (tether.deploy.stage.build: each byte verified against the
manifest as it is written, fetched from the DVC remote when the local cache lacks it). A copy
found there is reused only when its stamp records the manifest derived now from git, and only
after every file of it hashes to that manifest (tether.servedir.verify.verify_release_dir);
anything else in it is an IntegrityError, never a model. The cache defaults to the repository's
git directory (`.git/tether/loaded/`), outside the work tree, which a load never touches.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tether.adapters.workspace import Workspace
from tether.core.manifest import Manifest
from tether.errors import IntegrityError, TetherError, UsageError

if TYPE_CHECKING:
    from tether.registry.registry import Registry
    from tether.registry.release import Release


@dataclass(frozen=True)
class Staged:
    """A release materialised and verified in the load cache."""

    tag: str
    env: str | None  # the environment REF named, if it named one
    manifest: Manifest
    path: Path  # <cache>/releases/<id>
    cache: Path
    reused: bool  # an earlier load's copy, verified again


def cache_root(ws: Workspace, cache: str | os.PathLike[str] | None) -> Path:
    """Where loads materialise releases: `cache`, or the repository's `.git/tether/loaded/`.
    A directory in the work tree (but not in its git directory) is refused: it would change
    what `git status` says."""
    if cache is None:
        return ws.git.common_dir().absolute() / "tether" / "loaded"
    if not str(cache).strip():
        raise UsageError("cache is empty: give a directory, or None for the repository's .git/tether/loaded")
    path = Path(cache).expanduser().absolute()
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(ws.root))
    gitdirs = {Path(os.path.realpath(ws.git.common_dir())), Path(os.path.realpath(root / ".git"))}
    inside = real == root or root in real.parents
    if inside and not any(real == g or g in real.parents for g in gitdirs):
        raise UsageError(f"cache {path} is inside the repository's work tree ({root}); nothing was written",
                         hint="leave cache=None (the repository's .git/tether/loaded) or name a directory "
                              "outside the work tree")
    if os.path.lexists(path / "current") or os.path.lexists(path / "deploy.log"):
        raise UsageError(f"cache {path} is a serving directory (`tether deploy` keeps it); nothing was written",
                         hint="give the load cache a directory of its own: a load may rebuild a release "
                              "directory there that a server is using")
    return path


def resolve(ws: Workspace, ref: str, model: str | None) -> tuple[Registry, Release, str | None]:
    """(registry, release, environment) for REF: a release (`model@vX.Y.Z`), `latest`, a
    model's name, or an environment, as `tether show` resolves it. An environment's head must
    be its release's tree, by a tag that has not moved since, signed as the repository's
    signing policy requires (as `tether deploy` checks); a release tag as the policy requires."""
    from tether.core.refs import parse_ref
    from tether.registry import signing
    from tether.registry.registry import Registry
    from tether.registry.views import latest_named

    reg = Registry(ws, messages=False)
    arg = latest_named(ws, parse_ref(ref), model)
    rel = reg.resolve(arg, model)
    if arg.env:
        from tether.deploy.source import require_signed

        name = ws.model(model)
        events = reg.history(name, arg.env)
        reg.check_tag_integrity(events[:1])
        if rel.tree != events[0].tree:
            raise IntegrityError(f"{arg.env}'s head {events[0].commit[:12]} is not {rel.tag}'s tree",
                                 hint=f"the branch was edited by hand; move it with tether promote/rollback --env "
                                      f"{arg.env}; nothing was loaded")
        require_signed(ws, reg, name, arg.env, rel, events)
    else:
        signing.enforce_release(ws, rel)
    return reg, rel, arg.env


def stage(ws: Workspace, ref: str, model: str | None, cache: str | os.PathLike[str] | None,
          progress=None) -> Staged:
    """The release REF names, in the load cache, verified (see the module's docstring)."""
    from tether.adapters.dvcstore import DvcStore
    from tether.core.refs import release_dir_name
    from tether.deploy.source import storage_errors

    root = cache_root(ws, cache)
    reg, rel, env = resolve(ws, ref, model)
    if rel.unresolved:  # a fresh clone: the small objects (threshold, metrics) its derivation reads
        with storage_errors():
            rel = reg.resolve_objects([rel], DvcStore(ws.root))[0]
    manifest = cast(Manifest, rel.require_trusted("loaded"))
    final = root / "releases" / release_dir_name(rel.tag)
    try:
        (root / "releases").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to the load cache {root}: {exc.strerror}",
                         hint="pass cache= a directory you may write to") from None
    with _locked(root):
        reused = _reuse(root, final, manifest)
        if not reused:
            from tether.deploy.stage import build

            with storage_errors():
                build(ws, rel, final, full=False, smoke=False, progress=progress)
    return Staged(rel.tag, env, manifest, final, root, reused)


def _reuse(root: Path, final: Path, manifest: Manifest) -> bool:
    """True when `final` is a copy of this very manifest and every byte of it still verifies;
    False when there is none (or its stamp names another manifest: it is rebuilt). A copy of
    this manifest that no longer verifies was changed after tether wrote it: IntegrityError."""
    from tether.servedir.stamp import manifest_digest, read_stamp
    from tether.servedir.verify import verify_release_dir

    if not final.is_dir() or final.is_symlink():
        return False
    if (read_stamp(final) or {}).get("manifest_sha256") != manifest_digest(dict(manifest)):
        return False
    try:
        verify_release_dir(root, final)
    except IntegrityError as exc:
        raise IntegrityError(f"the loaded copy of {final.name} in {root} was changed after tether verified it: "
                             f"{exc.message.removeprefix(final.name + ': ')}",
                             hint=f"nothing was loaded; remove {final} (rm -rf) and load again to materialise a "
                                  f"fresh copy, and find out what changed it") from None
    return True


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One load at a time builds in a cache; another waits (a notebook and a script may share one)."""
    (root / ".tether").mkdir(parents=True, exist_ok=True)
    with open(root / ".tether" / "lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
        except OSError as exc:
            raise TetherError(f"cannot lock the load cache {root}: {exc.strerror}") from None
        yield
