"""What `tether checkout` must not lose: which outputs are the tuple's, and whether the workspace
holds work (uncommitted changes, outputs edited in place, a commit no ref keeps) that moving
would overwrite or leave behind."""

from __future__ import annotations

import os
from pathlib import Path

from tether.adapters.dvcstore import DvcStore
from tether.adapters.workspace import Workspace
from tether.core.settings import load_yaml
from tether.core import dvcgraph
from tether.digest import md5_file
from tether.errors import Conflict, TetherError


def tuple_outputs(ws: Workspace, rev: str | None, models: list[str]) -> dict[str, str]:
    """{path: md5} of the DVC-tracked outputs of the models' tuples in the pipeline at `rev`
    (None: the workspace). Other outputs (evaluation reports, plots, other models) are not
    checkout's to move; files git holds (a model kept in git, a small dep) are git checkout's."""
    if rev is None:
        dvc_yaml, lock = ws.dvc_yaml, ws.dvc_lock()
    else:
        text = ws.git.show_optional(rev, "dvc.lock")
        lock = load_yaml(text) if text else {}
        text = ws.git.show_optional(rev, "dvc.yaml")
        dvc_yaml = load_yaml(text) if text else {}
    found: dict[str, str] = {}
    for model in models:
        try:
            graph = dvcgraph.model_graph(dvc_yaml or {}, lock or {}, model)
        except TetherError:
            continue
        found.update({e.path: e.md5 for e in graph.weights + graph.data if e.md5 and not e.external})
    if found:
        for held in ws.git.names_in(rev or "HEAD", sorted(found)):
            found.pop(held, None)
    return found


def _dirty_outputs(changed: dict, tracked: set[str]) -> list[str]:
    """Outputs of the tuple that `dvc status` finds modified in the workspace: the work checkout
    would overwrite. An evaluation report or another model's output is not in the way."""
    found = set()
    for entries in changed.values():
        for item in entries if isinstance(entries, list) else ():
            outs = item.get("changed outs") if isinstance(item, dict) else None
            for path in outs or {}:
                p = dvcgraph.norm(path)
                if any(dvcgraph.under(p, t) or dvcgraph.under(t, p) for t in tracked):
                    found.add(p)
    return sorted(found)


def _same_as(store: DvcStore, path: Path, md5: str) -> bool:
    """Whether replacing the file at `path` loses nothing: it holds the object `md5`, or bytes the
    DVC cache already keeps (another version's weights, which `dvc checkout` brings back). A
    link into the cache is that object; anything else is hashed: DVC's own check trusts size and
    mtime, which an edit in place keeps."""
    cached = store.cache_path(md5)
    try:
        if path.is_symlink():
            return os.path.realpath(path) == os.path.realpath(cached)
        st, cst = path.stat(), cached.stat()
        if (st.st_dev, st.st_ino) == (cst.st_dev, cst.st_ino):
            return True
    except OSError:
        pass
    return _recoverable(store, path, md5)


def _recoverable(store: DvcStore, path: Path, md5: str | None = None) -> bool:
    """A regular file whose bytes are `md5`'s, or are in the DVC cache already."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        got = md5_file(path)
        if got == md5:
            return True
        cached = store.cache_path(got)
        return cached.is_file() and cached.stat().st_size == path.stat().st_size
    except OSError:
        return False


def _edited_outputs(store: DvcStore, root: Path, outputs: dict[str, str]) -> list[str]:
    """Outputs in the workspace whose bytes are not the ones dvc.lock records: an edit checkout
    would otherwise replace. A directory is checked file by file against its listing; a file
    added to it is an edit too. A missing output loses nothing."""
    edited = []
    for rel, md5 in sorted(outputs.items()):
        p = root / rel
        if not (p.exists() or p.is_symlink()):
            continue
        if not md5.endswith(".dir"):
            if not _same_as(store, p, md5):
                edited.append(rel)
            continue
        try:
            listing = {c["relpath"]: c["md5"] for c in store.dir_entries(md5)}
        except (OSError, TetherError):
            listing = None  # no listing to compare with: nothing proves the directory unedited
        if listing is None or not p.is_dir() or p.is_symlink():
            edited.append(rel)
            continue
        for f in sorted(p.rglob("*")):
            if f.is_dir() and not f.is_symlink():
                continue
            child = f.relative_to(p).as_posix()
            if child not in listing or not _same_as(store, f, listing[child]):
                edited.append(f"{rel}/{child}")
    return edited


def refuse_unsaved(ws: Workspace, store: DvcStore, outputs: dict[str, str]) -> None:
    """Conflict when checkout would overwrite work: uncommitted changes git or `dvc status` sees
    in the tuple's `outputs`, or outputs edited in place (which `dvc status` does not see)."""
    dirty = ws.git.status_porcelain()
    changed = [c for c in _dirty_outputs(store.changed_stages(), set(outputs))
               if not _recoverable(store, ws.root / c)]  # bytes the cache keeps are not lost
    if dirty or changed:
        what = ", ".join([line[3:] for line in dirty[:4]] + changed[:4])
        raise Conflict(f"the workspace has uncommitted work that checkout would overwrite: {what}",
                       hint="commit or stash it, or pass --force to discard it")
    edited = _edited_outputs(store, ws.root, outputs)
    if edited:
        raise Conflict("outputs in the workspace differ from what dvc.lock records (edited in place, "
                       f"so `dvc status` does not see it) and checkout would overwrite them: {', '.join(edited[:4])}"
                       + (f" and {len(edited) - 4} more" if len(edited) > 4 else ""),
                       hint="keep them (copy them elsewhere, or `dvc commit` and git commit), "
                            "or pass --force to discard them")


def require_kept(ws: Workspace, old_branch: str | None, old_head: str) -> None:
    """A detached HEAD that no branch, tag or remote branch holds is a commit the user made
    after a checkout: moving away would leave it to git's garbage collection."""
    if old_branch is not None:
        return
    res = ws.git.run("for-each-ref", "--count=1", "--contains", old_head, "--format=%(refname)",
                     "refs/heads", "refs/tags", "refs/remotes", check=False)
    if res.returncode == 0 and not res.stdout.strip():
        raise Conflict(f"HEAD is detached at {old_head[:12]}, a commit no branch or tag holds: checking out "
                       "something else would leave it behind",
                       hint=f"keep it on a branch first: git branch NAME {old_head[:12]}, then run this again")
