"""`tether checkout`: the safe form of `git checkout <rev> && dvc pull` in a workspace.

Plain git + DVC moves code and params first, then fails part-way on a missing object and leaves
old weights beside new code with `git status` clean. Here every object is fetched and checked
first; then git and the outputs move together, and any failure puts the workspace back exactly
as it was: the outputs we displaced wait in a backup directory on the same filesystem (so
restoring them is a rename, never a copy that could fail half-way). What checkout must not lose
is checked in checkout_safety, the move itself is checkout_move's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from tether.adapters import materialise
from tether.adapters.dvcstore import DvcStore
from tether.adapters.workspace import Workspace
from tether.commands.checkout_move import move_tuple
from tether.commands.checkout_safety import tuple_outputs
from tether.core import dvcgraph, paths
from tether.core.refs import parse_ref
from tether.core.settings import load_yaml
from tether.errors import IntegrityError, NotFound, UsageError
from tether.registry.registry import Registry


@dataclass
class CheckoutResult:
    release: str | None  # None: a local branch, not a release
    commit: str  # the commit HEAD is on now
    ref: str  # what was asked for: the release's tag, the environment's branch, or the local branch
    outputs: list[str]
    detached: bool = True
    way_back: str | None = None  # the command that returns to a branch, after a detached checkout

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def local_branch(ws: Workspace, text: str, model: str | None) -> str | None:
    """`text` as a local branch that is no environment (`main`, a feature branch), or None.
    An environment's own branch is never checked out as a branch: a commit there would move it."""
    text = text.strip()
    if not text or "@" in text or text.startswith("-") or (text.startswith("v") and text[1:2].isdigit()):
        return None
    if ws.git.ref(f"refs/heads/{text}") is None:
        return None
    models = [ws.model(model)] if model else sorted(ws.models)
    for m in models:
        envs = ws.environments(m)
        if text in envs:
            return None
        for env in envs:
            if ws.branch(m, env) == text:
                raise UsageError(f"'{text}' is the branch of {m}'s environment {env}: a commit on it would move {env}",
                                 hint=f"tether checkout {env} --model {m} (HEAD is detached at its release)")
    return text


def checkout(ws: Workspace, ref_text: str, *, model: str | None = None, force: bool = False,
             dry_run: bool = False, store: DvcStore | None = None, progress=None) -> CheckoutResult:
    """A release (`model@vX.Y.Z`, `model@latest`) or an environment onto a detached HEAD at its
    commit, so a commit made afterwards moves no environment; a local branch that is no
    environment (the way back: `tether checkout main`) onto that branch. Either way with the
    tuple's DVC outputs, all or nothing."""
    branch = local_branch(ws, ref_text, model)
    store = store or DvcStore(ws.root)
    if branch is not None:
        names = sorted(set(ws.models) | set(dvcgraph.models(load_yaml(ws.git.show_optional(branch, "dvc.yaml") or "")
                                                              or {})))
        if model:
            names = [ws.model(model)]
        outputs = tuple_outputs(ws, branch, names)
        entries = [{"path": p, "md5": m} for p, m in sorted(outputs.items())]
        commit = ws.git.rev_parse(branch) or branch
        move_tuple(ws, store, names, branch, False, entries, force, dry_run, progress, f"branch {branch}")
        return CheckoutResult(release=None, commit=commit, ref=branch, outputs=[e["path"] for e in entries],
                              detached=False)
    ref = parse_ref(ref_text)
    reg = Registry(ws, messages=False)
    try:
        rel = reg.resolve(ref, model)
    except NotFound as exc:
        if ref.env and "unknown environment" in exc.message:
            raise NotFound(f"'{ref.env}' is not a release, an environment or a local branch",
                           hint=f"{exc.hint}; or a release: model@vX.Y.Z; or a local branch: tether checkout main"
                           ) from None
        raise
    manifest = rel.require_trusted("checked out")
    if ref.env:
        reg.check_tag_integrity(reg.history(rel.name.model, ref.env)[:1])
    model_name = rel.name.model
    entries = materialise.needed(manifest, full=True)
    for e in entries:  # every path this checkout would write, checked before anything moves
        paths.inside(ws.root, e["path"], "output path")
    label, target = rel.tag, rel.commit
    if ref.env:
        label = ws.branch(model_name, ref.env)
        target = _check_env_tree(ws, label, rel)
    old_branch = ws.git.current_branch()
    move_tuple(ws, store, [model_name], target, True, entries, force, dry_run, progress, rel.tag)
    return CheckoutResult(release=rel.tag, commit=target, ref=label, outputs=[e["path"] for e in entries],
                          detached=True, way_back=_way_back(ws, old_branch, [model_name]))


def _way_back(ws: Workspace, old_branch: str | None, models: list[str]) -> str:
    """The command that returns to a branch: the one HEAD was on, else main (or master)."""
    env_branches = set()
    for m in models:
        env_branches |= {ws.branch(m, env) for env in ws.environments(m)}
    for name in (old_branch, "main", "master"):
        if name and name not in env_branches and ws.git.ref(f"refs/heads/{name}"):
            return f"tether checkout {name}"
    return "git switch BRANCH && dvc checkout"


def _check_env_tree(ws: Workspace, branch: str, rel) -> str:
    """`checkout ENV` only onto a branch whose tree is exactly its release's tree: anything else
    is the half state (new code, old weights, or the reverse) checkout exists to prevent.
    Returns the branch's head commit (local, else origin's)."""
    head = ws.git.ref(f"refs/heads/{branch}") or ws.git.ref(f"refs/remotes/origin/{branch}")
    tree = ws.git.rev_parse(f"{head}^{{tree}}") if head else None
    if head is None or tree != rel.tree:
        raise IntegrityError(f"{branch}'s tree is not {rel.tag}'s tree: it was edited by hand",
                             hint=f"move it to a release with tether promote/rollback, or check out the release "
                                  f"itself: tether checkout {rel.tag}")
    return head


def verify_release(ws: Workspace, ref_text: str, model: str | None = None, progress=None) -> dict:
    """`tether verify REF`: fetch (cache or remote) and recompute every digest."""
    from tether.runtime.bundle import is_bundle, verify_bundle

    reg = Registry(ws, messages=False)
    ref = parse_ref(ref_text)
    rel = reg.resolve(ref, model)
    manifest = rel.require_trusted("verified")
    if ref.env:
        reg.check_tag_integrity(reg.history(rel.name.model, ref.env))
    from tether.registry.check import check_releases

    report = check_releases(reg, [rel], None, remote=False)
    if report.findings:
        raise IntegrityError(f"{rel.tag}: " + "; ".join(f.message for f in report.findings))
    store = DvcStore(ws.root)
    entries = materialise.needed(manifest, full=True)
    materialise.ensure_cached(store, entries, progress)
    with tempfile.TemporaryDirectory(prefix="tether-verify-") as tmp:
        dest = Path(tmp) / "release"
        materialise.materialise(ws.git, store, manifest, dest, entries)
        art = dest / manifest["artifact"]["path"]
        if is_bundle(art):
            verify_bundle(art)
    # Every file inside a directory output was hashed on its own (md5 against DVC's listing,
    # sha256 into the directory's tree digest): count the files proved, not manifest lines.
    files = sum(len(materialise.dir_listing(store, e["md5"])) if e["md5"].endswith(".dir") else 1 for e in entries)
    return {"release": rel.tag, "files": files, "outputs": len(entries), "ok": True}
