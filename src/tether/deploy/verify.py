"""`tether verify --target`: every digest of DIR/current recomputed against the manifest it was
deployed from (the check every worker makes before it imports a release, servedir/verify.py:
the DVC outputs byte for byte, and the git part, code and dvc.yaml, against the release's git
tree), and a bundle's own records checked."""

from __future__ import annotations

from pathlib import Path

from tether.servedir.layout import resolve_current, resolve_target
from tether.servedir.verify import verify_release_dir
from tether.errors import NotFound


def verify_target(target: str | Path, cwd: str | Path = ".") -> dict:
    """Recompute every digest of DIR/current against the manifest it was deployed from. Only a
    `current` tether made is verified (see resolve_current), and only paths inside it are read."""
    target = resolve_target(target, cwd)
    root = resolve_current(target)
    if root is None:
        raise NotFound(f"{target} has no current release", hint="deploy one: tether deploy --env … --target …")
    manifest, entries, bundle = verify_release_dir(target, root)
    from tether.runtime.bundle import is_bundle, verify_bundle

    if is_bundle(bundle):  # any other model format is covered by the release's digests above
        verify_bundle(bundle)
    return {"target": str(target), "release": f"{manifest.get('model')}@v{manifest.get('version')}",
            "files": len(entries), "ok": True}
