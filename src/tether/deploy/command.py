"""`tether deploy`: converge a serving directory to an environment's release, atomically.

Layout of DIR:
    releases/<tag>/        complete, verified trees (git tree + DVC outputs + .tether/stamp.json)
    releases/<tag>.partial being built; never pointed at
    current -> releases/<tag>   swapped with one rename(2) of a fresh symlink
    deploy.log             append-only JSON lines
    .tether/repo           the git clone and DVC cache deploys fetch into (with --repo)
    .tether/lock           one deploy at a time per DIR

Everything that can fail (fetch, copy, verify, smoke test) happens before the switch, in a
directory `current` does not name, so a failure or a kill at any step leaves the old release
serving.

The work is split by what it owns: deploy/source.py (where the release comes from: the plan),
deploy/stage.py (the staging directory), servedir/stamp.py (a release directory's stamp),
servedir/layout.py (`current`, the switch, the deploy log, the lock, pruning), servedir/verify.py
(the check every worker makes) and deploy/verify.py (`verify --target`). Each name is imported
from the module that owns it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from tether.adapters import nodecache
from tether.adapters.nodecache import NodeCache
from tether.servedir.weight import write_weight_file
from tether.deploy.source import (check_origin, host_remote_hint, plan_source, remember_remote, remote_where,
                                 source_workspace, storage_errors)
from tether.deploy.stage import build
from tether.servedir.stamp import manifest_digest, stamp_ok
from tether.servedir.layout import (current_release, log_event, prune, refuse_other_env, resolve_target, serving,
                                 switch_current, target_lock)
from tether.errors import StorageError, TetherError, UsageError
from tether.core.moves import Event
from tether.core.refs import release_dir_name
from tether.registry.release import Release
from tether.adapters.gitrepo import Git
from tether.adapters.workspace import Workspace


@dataclass
class DeployResult:
    env: str
    release: str
    previous: str | None
    outcome: str  # deployed | switched | noop
    path: str
    pruned: list[str]
    weight: int | None = None  # a canary environment's traffic weight, written to DIR/weight.json

    def as_dict(self) -> dict:
        return self.__dict__.copy()



def deploy(
    target: str | Path,
    env: str,
    *,
    repo_url: str | None = None,
    model: str | None = None,
    keep: int = 3,
    full: bool = False,
    smoke: bool = False,
    dry_run: bool = False,
    progress=None,
    cwd: str | Path = ".",
    require_signatures: bool = False,
    allowed_signers: str | Path | None = None,
    force: bool = False,
    node_cache: str | Path | None = None, require_attestation: str | Path | None = None,
) -> DeployResult:
    """`cwd` is the directory tether acts in (`-C`): the repository without --repo, and what a
    relative DIR or --repo path is relative to. A DIR whose deploy log says it serves another
    environment (or another model) is refused unless `force` (recorded in the log). `node_cache`
    (else TETHER_NODE_CACHE): adapters/nodecache.py; `require_attestation`: deploy/attestcheck.py."""
    if keep < 1:
        raise UsageError("--keep must be at least 1 (the live release)")
    target = resolve_target(target, cwd)
    local = _refuse_inside_work_tree(target, cwd) if repo_url is None else None
    signed, attest_key = _host_signing(require_signatures, allowed_signers, repo_url, cwd), _attest_key(
        require_attestation, cwd)
    # A `current` tether did not make is refused before anything is created or locked.
    current_release(target)
    node = nodecache.from_env(Path(cwd) / node_cache if node_cache else None)
    if dry_run:
        return _dry_run(target, env, repo_url, model, cwd, signed, force, attest_key)
    try:
        target.mkdir(parents=True, exist_ok=True)
        (target / "releases").mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to {target}: {exc.strerror}") from None
    if not os.access(target, os.W_OK):
        raise UsageError(f"cannot write to {target}: permission denied")
    with target_lock(target):
        previous = current_release(target)  # again, under the lock
        served = serving(target, previous)
        refuse_other_env(target, served, env, model, force)  # before anything is fetched
        ws = source_workspace(target, repo_url, env, model, progress, cwd=cwd, local=local)
        try:
            res = _converge(ws, target, env, model, previous, served, keep=keep, full=full, smoke=smoke,
                            progress=progress, signed=signed, force=force, own_clone=repo_url is None,
                            node=node, attest_key=attest_key)
        except StorageError as exc:
            where = remote_where(ws) if "DVC remote" in exc.message else None
            if where and where not in exc.message:
                exc.message = f"{exc.message} (DVC remote {where})"
            if repo_url is not None:
                exc.hint = "; ".join(filter(None, [exc.hint, host_remote_hint(ws.root)]))
            raise
        if repo_url is not None:
            with contextlib.suppress(OSError, TetherError):  # the deploy is done; this only helps a later one
                remember_remote(ws)
        return res


def _converge(ws: Workspace, target: Path, env: str, model: str | None, previous: str | None, served: dict | None,
              *, keep: int, full: bool, smoke: bool, progress, signed: tuple[bool, Path | None], force: bool,
              own_clone: bool, node: NodeCache | None = None, attest_key=None) -> DeployResult:
    """Under the lock: plan from the source, then build, switch, log and prune."""
    with storage_errors():
        _reg, rel, ev = plan_source(ws, model, env, signed=signed, own_clone=own_clone, node=node)
    attested = _attestcheck().require(ws, rel, attest_key) if attest_key is not None else None
    replaced = refuse_other_env(target, served, env, rel.name.model, force)
    manifest = rel.manifest or {}  # plan_source refuses a release without one
    release_id = release_dir_name(rel.tag)
    final = target / "releases" / release_id
    record = {"env": env, "from": previous, "to": release_id, "release": rel.tag, "commit": rel.commit,
              **({"forced": f"replaced {replaced}"} if replaced else {})}
    weight = _canary_weight(ws, rel, env, ev)

    if previous == release_id and final.exists() and stamp_ok(final, manifest) and not replaced:
        if attested is not None:
            _attestcheck().check_built(final, attested)
        if weight is not None:  # the release stays; its traffic weight may have moved
            write_weight_file(target, env, release_id, weight, ev.commit)
        return DeployResult(env, rel.tag, previous, "noop", str(final), [], weight)
    try:
        if final.exists() and stamp_ok(final, manifest):
            outcome = "switched"
        else:
            outcome = "deployed"
            with storage_errors():
                build(ws, rel, final, full=full, smoke=smoke, progress=progress, node=node)
        if attested is not None:
            _attestcheck().check_built(final, attested)
        switch_current(target, release_id)
    except BaseException as exc:  # including KeyboardInterrupt: record it, leave current alone
        with contextlib.suppress(Exception):
            log_event(target, {**record, "outcome": "failed", "error": str(exc)[:500]})
        raise
    # the log line is the anchor `tether serve` checks a release's recorded manifest against
    log_event(target, {**record, "outcome": outcome, "manifest_sha256": manifest_digest(manifest)})
    if weight is not None:
        write_weight_file(target, env, release_id, weight, ev.commit)
    pruned = prune(target, keep, protect={release_id, previous})
    return DeployResult(env, rel.tag, previous, outcome, str(final), pruned, weight)


def _attestcheck():
    """deploy/attestcheck.py, imported only by a deploy that requires attestations (it loads
    `cryptography`): every other deploy starts as fast as before."""
    from tether.deploy import attestcheck

    return attestcheck


def _attest_key(path: str | Path | None, cwd: str | Path):
    return _attestcheck().host_key(path, cwd) if path is not None else None


def _canary_weight(ws: Workspace, rel: Release, env: str, ev: Event) -> int | None:
    """A canary environment's recorded weight (its head move's trailer), None for any other."""
    from tether.core.moves import weight_of

    return weight_of([ev]) if env in ws.settings(rel.name.model).canaries else None


def _host_signing(required: bool, signers: str | Path | None, repo_url: str | None,
                  cwd: str | Path) -> tuple[bool, Path | None]:
    """A host that requires signatures trusts its own allowed signers file, never one that
    arrives with what it deploys (the environment's tree is the release's, anyone's to write)."""
    path = None
    if signers is not None:
        path = (Path(cwd) / signers).absolute()
        if not path.is_file():
            raise UsageError(f"--allowed-signers {signers}: no such file")
    if required and path is None and repo_url is not None:
        raise UsageError("--require-signed with --repo needs the host's own --allowed-signers FILE",
                         hint="copy the team's allowed signers file to the host and name it; nothing was deployed")
    return required, path


def _refuse_inside_work_tree(target: Path, cwd: str | Path) -> Git | None:
    """A serving directory inside the repository it deploys from would dirty its work tree (and
    the next `tether release` would refuse): refused before anything is written. Returns the
    repository found at `cwd` (the deploy's source: source_workspace takes it, not asking git again)."""
    try:
        git = Git.discover(cwd)
    except TetherError:
        return None  # not in a repository: source_workspace says so
    root = Path(os.path.realpath(git.root))
    where = Path(os.path.realpath(target))
    if where == root or root in where.parents:
        raise UsageError(f"--target {target} is inside the repository's work tree ({root}); nothing was written",
                         hint="serve from a directory outside the repository, e.g. ../serving or /srv/tether/ENV")
    return git


def _dry_run(target: Path, env: str, repo_url: str | None, model: str | None, cwd: str | Path = ".",
             signed: tuple[bool, Path | None] = (False, None), force: bool = False, attest_key=None) -> DeployResult:
    """What deploy would do, touching nothing in DIR (a --repo clone goes to a temp dir)."""
    import tempfile

    served = serving(target, current_release(target))
    refuse_other_env(target, served, env, model, force)
    clone = target / ".tether" / "repo"
    if repo_url and (clone / ".git").exists():
        check_origin(clone, repo_url, Path(cwd).absolute())  # the real run would refuse
    with tempfile.TemporaryDirectory(prefix="tether-dry-run-") as tmp:
        ws = source_workspace(Path(tmp), repo_url, env, model, cwd=cwd) if repo_url else Workspace.discover(cwd)
        with storage_errors():  # a --repo clone is our own temp copy; the user's repository is only read
            _reg, rel, _ev = plan_source(ws, model, env, read_only=not repo_url, signed=signed,
                                         own_clone=not repo_url)
        if attest_key is not None:  # the signature, as the real run checks it first (no notes fetched here)
            _attestcheck().require(ws, rel, attest_key, fetch=bool(repo_url))
        replaced = refuse_other_env(target, served, env, rel.name.model, force)
        release_id = release_dir_name(rel.tag)
        final = target / "releases" / release_id
        previous = current_release(target)
        if previous == release_id and final.exists() and stamp_ok(final, rel.manifest or {}) and not replaced:
            outcome = "would-noop"
        elif final.exists() and stamp_ok(final, rel.manifest or {}):
            outcome = "would-switch"
        else:
            outcome = "would-deploy"
        return DeployResult(env, rel.tag, previous, outcome, str(final), [])

