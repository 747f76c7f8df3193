"""The check every worker makes before it imports a release (and `tether verify --target` reads
through): everything in a materialised release against the manifest deploy derived from git for it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tether.adapters import materialise
from tether.core import paths
from tether.servedir.stamp import RECORDS, manifest_digest, read_stamp
from tether.servedir.layout import logged_manifest_digest
from tether.errors import IntegrityError
from tether.adapters.gitrepo import Git
from tether.core.manifest import dvc_objects


def _inside(root: Path, rel, what: str) -> Path:
    """`root / rel` for a path read from a release's own records (.tether/*.json), which anyone
    with write access to DIR can edit: a safe relative path (tether.core.paths) that, every symlink
    followed (the last one too: verify and serve read through it), stays inside `root`."""
    why = paths.problem(rel, what)
    if why:
        raise IntegrityError(f"{why}; refusing to read outside {root}",
                             hint="the release's .tether records were edited: deploy it again "
                                  "(remove the release directory first)")
    path = root / rel
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise IntegrityError(f"{what} {rel!r} leads through a symlink to {real}; refusing to read outside {root}",
                             hint="the release directory was edited: deploy it again (remove it first)")
    return path


def read_release(root: Path) -> tuple[dict, list[dict], Path]:
    """A deployed release's manifest, its entries and its bundle directory, every path in them
    confined to `root` (see _inside). IntegrityError when they are missing or malformed."""
    try:
        manifest = json.loads((root / ".tether" / "manifest.json").read_text())
        entries = json.loads((root / ".tether" / "entries.json").read_text())
    except (OSError, ValueError):
        raise IntegrityError(f"{root} has no readable tether stamp: it was not deployed by tether",
                             hint="deploy it again: tether deploy --env ENV --target DIR") from None
    artifact = manifest.get("artifact") if isinstance(manifest, dict) else None
    if not isinstance(artifact, dict) or not isinstance(entries, list) \
            or not all(isinstance(e, dict) for e in entries):
        raise IntegrityError(f"{root}/.tether/manifest.json or entries.json is malformed",
                             hint="deploy the release again: tether deploy --env ENV --target DIR")
    for e in entries:
        _inside(root, e.get("path"), f"{root.name}/.tether/entries.json: path")
    bundle = _inside(root, artifact.get("path"), f"{root.name}/.tether/manifest.json: artifact path")
    return manifest, entries, bundle



def verify_release_dir(target: Path, root: Path) -> tuple[dict, list[dict], Path]:
    """Everything in a materialised release against the manifest deploy derived from git for it,
    never against a file the release's own bundle carries (a tamperer can rewrite a bundle and
    its manifest.json consistently):

    - `.tether/manifest.json` hashes to the digest in the stamp and to the one deploy.log
      recorded when the release was made live;
    - the DVC outputs listed in `.tether/entries.json` are the manifest's own (same path, md5 and
      sha256), and every byte of them hashes to it (directories file by file, none added);
    - every other file of the release directory, its git part (code, dvc.yaml, the serving
      entrypoint), hashes to the manifest's git tree id: nothing changed, added or removed.

    Returns (manifest, entries, bundle path); IntegrityError names the first thing that fails."""
    from tether.digest import git_tree_id

    manifest, entries, bundle = read_release(root)
    digest = manifest_digest(manifest)
    stamp = read_stamp(root) or {}
    hint = f"deploy the release again (tether deploy … --target {target}); nothing was loaded from it"
    if stamp.get("manifest_sha256") != digest:
        raise IntegrityError(f"{root.name}: .tether/manifest.json does not match the digest its stamp recorded", hint=hint)
    logged = logged_manifest_digest(target, root.name)
    if logged is not None and logged != digest:
        raise IntegrityError(f"{root.name}: .tether/manifest.json is not the manifest deploy.log recorded for it",
                             hint=hint)
    known = {(e["path"], e["md5"]): e for e in dvc_objects(manifest)}
    for e in entries:
        want = known.get((e.get("path"), e.get("md5")))
        if want is None:
            raise IntegrityError(f"{root.name}: .tether/entries.json lists {e.get('path')!r}, which is not in the manifest",
                                 hint=hint)
        if want.get("sha256") and e.get("sha256") != want["sha256"]:
            raise IntegrityError(f"{root.name}: .tether/entries.json records another sha256 for {e['path']} than the "
                                 "manifest", hint=hint)
    listed = {e["path"] for e in entries}
    missing = [e["path"] for e in materialise.needed(manifest) if e["path"] not in listed]
    if missing:
        raise IntegrityError(f"{root.name}: the model's outputs {', '.join(missing)} are not recorded", hint=hint)
    try:
        materialise.verify_outputs(entries, root)
    except IntegrityError as exc:
        raise IntegrityError(f"{root.name}: {exc.message}", hint=hint) from None
    tree = git_tree_id(root, exclude={*RECORDS, *listed})
    if manifest.get("tree") and tree != manifest["tree"]:
        raise IntegrityError(f"{root.name}: the release's git files (code, dvc.yaml) do not hash to its git tree "
                             f"{str(manifest['tree'])[:12]} (got {str(tree)[:12]}): a file was changed, added or removed",
                             hint=hint)
    _against_clone(target, root, manifest, digest, hint)
    return manifest, entries, bundle


def _against_clone(target: Path, root: Path, manifest: dict, digest: str, hint: str) -> None:
    """With the clone deploy keeps in DIR/.tether/repo (deploy --repo), the recorded manifest
    must also be what git says now: the tag names the manifest's commit, the commit has the
    manifest's tree, and the manifest derived afresh from the commit is the recorded one."""
    clone = target / ".tether" / "repo"
    if not (clone / ".git").is_dir():
        return
    tag = f"{manifest.get('model')}@v{manifest.get('version')}"
    git = Git(clone)
    commit = git.rev_parse(f"refs/tags/{tag}^{{commit}}")
    if commit is None:
        return  # a release the clone has not fetched: nothing to compare with
    if commit != manifest.get("commit") or git.tree_of(commit) != manifest.get("tree"):
        raise IntegrityError(f"{root.name}: its recorded manifest names commit {str(manifest.get('commit'))[:12]}, "
                             f"but {tag} in {clone} is {commit[:12]}", hint=hint)
    # lazy: a worker without deploy --repo's clone never loads the registry
    from tether.registry.registry import Registry
    from tether.adapters.workspace import Workspace

    rel = Registry(Workspace(clone, git), messages=False).by_tag(tag)
    if rel is not None and rel.manifest is not None and not rel.unresolved \
            and manifest_digest(rel.manifest) != digest:
        raise IntegrityError(f"{root.name}: its recorded manifest is not the one derived from {tag}'s commit in {clone}",
                             hint=hint)
