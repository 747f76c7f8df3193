"""Where a deploy's release comes from: the repository (or a clone of --repo kept in DIR), the
environment's head on origin, and the release it names, trusted before a byte is fetched."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from tether.adapters.dvcstore import DvcStore
from tether.adapters.nodecache import NodeCache
from tether.errors import IntegrityError, NotFound, StorageError, TetherError, UsageError
from tether.adapters.gitrepo import Git
from tether.adapters.narrowfetch import fetch_release_tags, head_log
from tether.core.moves import RELEASE, Event
from tether.registry.registry import Registry
from tether.registry.unpushed import refuse_unpushed
from tether.registry.release import Release
from tether.adapters.workspace import Workspace


def _url_key(url: str, base: Path) -> str:
    """What a git URL names, for comparing the URL given now with the clone's `origin`: a local
    path (git clone stores it absolute) by its real path, relative ones against `base`; any
    other URL (scheme://, scp-like host:path) as written, less trailing slashes."""
    u = url.strip()
    if u.startswith("file://"):
        u = u[len("file://"):]
    elif "://" in u or ":" in u.split("/", 1)[0]:
        return u.rstrip("/")
    return os.path.realpath(os.path.join(base, u))


def check_origin(clone: Path, repo_url: str, base: Path) -> None:
    """A clone in DIR/.tether/repo serves the URL it was cloned from, and no other: deploying
    --repo B from a clone of A would silently serve A's releases."""
    origin = Git(clone).remote_url("origin")
    if origin is None or _url_key(origin, base) != _url_key(repo_url, base):
        raise UsageError(
            f"{clone} is a clone of {origin or '(no origin)'}, not of {repo_url}",
            hint=f"deploy {repo_url} to another --target, or remove {clone} to clone {repo_url} afresh "
                 f"(its DVC cache goes with it)",
        )


def source_workspace(target: Path, repo_url: str | None, env: str, model: str | None, progress=None,
                     cwd: str | Path = ".", local: Git | None = None) -> Workspace:
    """Where releases come from: the given git URL, cloned into DIR/.tether/repo (whose DVC
    cache then serves every later deploy and rollback) and checked out at the environment's
    head, so dvc.yaml and the DVC remote config are the live release's own; or, without --repo,
    the repository at `cwd` (`-C`, default: where we run). A relative local --repo path is
    relative to `cwd` too, as in `git -C cwd clone`. `local`: the repository at `cwd`, when the
    caller has discovered it already."""
    if repo_url is None:
        return Workspace(local.root, local) if local is not None else Workspace.discover(cwd)
    if not repo_url.strip():
        raise UsageError("--repo is empty: it must be a git URL or path")
    base = Path(cwd).absolute()
    if not base.is_dir():
        raise UsageError(f"{base} is not a directory (-C)")
    clone = target / ".tether" / "repo"
    git = Git(clone)
    if not (clone / ".git").exists():
        if progress:
            progress(f"cloning {repo_url} …")
        tmp = clone.with_name("repo.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            Git(base).clone_no_checkout(repo_url, tmp)
        except TetherError as exc:
            raise NotFound(f"cannot clone {repo_url}: {exc.message}") from None
        os.replace(tmp, clone)
    else:
        check_origin(clone, repo_url, base)
    try:
        git.fetch("origin", "+refs/heads/*:refs/remotes/origin/*")
    except StorageError as exc:
        reason = exc.message.partition("': ")[2] if exc.message.startswith("cannot fetch from git") else exc.message
        raise StorageError(f"cannot fetch from {repo_url}: {reason or exc.message}",
                           hint="check that the repository still exists there and that you may read it; "
                                "nothing was deployed") from None
    names = [f"{model}/{env}"] if model else []
    names += [env] + [r.name[len("refs/remotes/origin/"):] for r in git.for_each_ref("refs/remotes/origin/")
                      if r.name.endswith(f"/{env}") and r.name.count("/") > 3]
    for name in names:
        head = git.ref(f"refs/remotes/origin/{name}")
        if head:
            git.checkout(head, detach=True, force=True)
            return Workspace(clone, git)
    raise NotFound(f"{repo_url} has no branch for environment '{env}'",
                   hint=f"promote a release first: tether promote MODEL@vX.Y.Z --env {env} --push …")


_STORAGE_LIBRARIES = ("dvc", "dvc_data", "dvc_objects", "scmrepo", "fsspec", "s3fs", "aiobotocore", "botocore",
                      "dulwich", "pygit2", "asyncssh", "requests", "aiohttp", "urllib3")


def _reason(exc: BaseException | None) -> str:
    """The whole chain of a library error: DVC raises `CloneError("SCM error")` from the
    error that says which repository could not be cloned and why."""
    parts: list[str] = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = " ".join(str(exc).split()) or type(exc).__name__
        if not any(text in p for p in parts):
            parts.append(text)
        exc = exc.__cause__ or exc.__context__
    return ": ".join(parts)[:600]


@contextlib.contextmanager
def storage_errors():
    """Storage failures from the libraries under DvcStore (DVC, its SCM layer cloning the source
    of a `dvc import`, fsspec, boto) leave as StorageError (exit 7) with their reason, never as
    an unexplained exit 1. Tether's own errors and local OS errors pass unchanged."""
    try:
        yield
    except TetherError:
        raise
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in _STORAGE_LIBRARIES:
            raise
        raise StorageError(f"DVC storage failed: {type(exc).__name__}: {_reason(exc)}",
                           hint="check that the DVC remote (dvc remote list) and the source repository of "
                                "any `dvc import` are reachable; nothing was switched") from exc


def require_signed(ws: Workspace, reg: Registry, model: str, env: str, rel: Release, events: list,
                   host_required: bool = False, host_signers: Path | None = None) -> None:
    """The signing policy, checked before anything is materialised or switched: the repository's
    (`meta.tether.signing`), plus the host's own when it was told `--require-signed` (then the
    environment's newest move must carry a good signature by a key in `--allowed-signers`, the
    host's own file, whatever the repository says). A refusal leaves `current` as it was."""
    from tether.registry import signing
    from tether.core import signpolicy as sp

    pol = signing.policy(ws, model)
    if host_required:
        host = sp.Policy(releases=pol.releases, environments={env: sp.Rule(require_signed=True)})
        pol = sp.merge(pol, host)
    signers = signing.allowed_signers(ws, host_signers)
    bad = signing.violations(signing.env_verdicts(ws, reg, model, env, signers, pol, events))
    if bad:
        raise signing.refuse(env, bad, "nothing was deployed; the previous release keeps serving")
    signing.enforce_release(ws, rel, host_signers, pol)


def plan_source(ws: Workspace, model: str | None, env: str, read_only: bool = False,
                signed: tuple[bool, Path | None] = (False, None),
                own_clone: bool = False, node: NodeCache | None = None) -> tuple[Registry, Release, Event]:
    """The release the environment runs: per the git remote when there is one (a local branch
    may lag behind), else per the local branch. `read_only` (a --dry-run in the user's own
    repository) fetches nothing: origin's branch as last fetched, and no DVC objects.
    `own_clone` (a deploy from the user's repository, not --repo): a local branch that holds a
    move origin lacks (ahead, or diverged) is refused, never silently overruled by origin's."""
    model = ws.model(model)
    branch = ws.branch(model, env)
    head, log, tag = None, [], None
    if read_only:
        head = ws.git.ref(f"refs/remotes/origin/{branch}")
    elif ws.git.remote_url("origin"):
        # only the environment's branch and the one release tag its head names, never every tag:
        # a host's git traffic does not grow with the registry (adapters/narrowfetch.py)
        fetched = ws.git.fetch_optional("origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        # origin's head when it has the branch, else the local one's: its moves, read once (the
        # registry takes them below), the newest naming its release
        log = head_log(ws.git, f"refs/remotes/origin/{branch}" if fetched else f"refs/heads/{branch}")
        head = log[0].commit if fetched and log else None
        tag = log[0].trailers.get(RELEASE) if log else None
        fetch_release_tags(ws.git, "origin", None, model, tag=tag)
    # the one read of the refs brings that tag's message (the manifest its release is checked
    # against); nothing kept under .git/tether steers a deploy (every parse is made afresh)
    reg = Registry(ws, messages=False, message_of=f"refs/tags/{tag}" if tag else None)
    if own_clone and head is not None:
        refuse_unpushed(reg, model, env, branch)
    if head is None:
        head = reg.env_head(model, env)
    events = reg.events_at(env, head, model, entries=log if log and log[0].commit == head else None) if head else []
    if not events:
        raise NotFound(f"environment '{env}' of {model} has no release yet",
                       hint=f"promote one first: tether promote {model}@vX.Y.Z --env {env} …")
    ev = events[0]
    if not ev.release:
        raise IntegrityError(f"{branch}'s head {ev.commit[:12]} was committed outside tether and matches no release",
                             hint=f"move {env} to a release with tether promote/rollback; nothing was deployed")
    reg.check_tag_integrity([ev])
    rel = reg.by_tag(ev.release)
    if rel is not None and rel.unresolved and not read_only:
        # a host with an empty cache: fetch the small objects (threshold, metrics, listings) the
        # derivation needs, so the manifest a deploy records is the same on every host
        rel = reg.resolve_objects([rel], DvcStore(ws.root, node=node))[0]
    if rel is None or rel.manifest is None:
        raise IntegrityError(f"{ev.release}, live in {env}, is not a complete release")
    rel.require_trusted("deployed")
    if rel.tree != ev.tree:
        raise IntegrityError(f"{branch}'s tree is not {rel.tag}'s tree",
                             hint="the branch was edited by hand; move it with tether promote/rollback")
    require_signed(ws, reg, model, env, rel, events, *signed)
    return reg, rel, ev



def host_remote_hint(clone: Path) -> str:
    return (f"a --repo host's DVC remote is its own: {clone}/.dvc/config.local serves every release, whatever "
            f"each release's committed .dvc/config says (cd {clone} && dvc remote add --local -d NAME URL)")


def remember_remote(ws: Workspace) -> None:
    """After a --repo deploy that fetched what it needed: unless the host's clone already names
    a default remote in its own `.dvc/config.local`, record there the remote just used (as DVC
    resolved it from the release's tree), so a later rollback to a release committed before
    that remote was (its tree names none, or an older one) is served from it too."""
    local = ws.root / ".dvc" / "config.local"
    try:  # the usual case, without starting DVC: the host's file already names a default remote
        if re.search(r"^\s*\[\s*core\s*\][^\[]*^\s*remote\s*=", local.read_text(), re.M):
            return
    except OSError:
        pass
    store = DvcStore(ws.root)
    try:
        if (store.repo.config.load_one("local").get("core") or {}).get("remote"):
            return
        name, settings = store.remote_settings()
    except StorageError:  # no remote at all: this release needed none; nothing to record
        return
    finally:
        store.close()
    DvcStore(ws.root).use_remote(name, settings)


def remote_where(ws: Workspace) -> str | None:
    """The DVC remote a deploy reads, for a storage message: `URL` or `URL at ENDPOINT`."""
    store = DvcStore(ws.root)
    try:
        _name, settings = store.remote_settings()
    except Exception:  # a message helper: never the reason a failure goes unexplained
        return None
    finally:
        store.close()
    endpoint = settings.get("endpointurl")
    return f"{settings.get('url')}" + (f" at {endpoint}" if endpoint else "")
