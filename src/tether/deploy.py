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
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tether import materialise, paths
from tether.digest import sha256_bytes
from tether.dvcstore import DvcStore
from tether.errors import IntegrityError, NotFound, StorageError, TetherError, UsageError
from tether.gitrepo import Git
from tether.manifest import dumps, dvc_objects
from tether.registry import Registry, Release
from tether.release import now_iso
from tether.workspace import Workspace

STAMP = ".tether/stamp.json"


@dataclass
class DeployResult:
    env: str
    release: str
    previous: str | None
    outcome: str  # deployed | switched | noop
    path: str
    pruned: list[str]

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def manifest_digest(manifest: dict) -> str:
    return sha256_bytes(dumps(manifest).encode())


def resolve_target(target: str | Path, cwd: str | Path = ".") -> Path:
    """DIR as given on the command line, absolute. A relative DIR is relative to `cwd` (the
    directory of `-C`, as in git). An empty DIR is refused: Path("") is ".", and a deploy there
    would fill whatever directory the command happened to run in."""
    if target is None or not str(target).strip():
        raise UsageError("--target is empty: it must name the serving directory",
                         hint="give a directory, e.g. --target /srv/models/fraud")
    path = Path(target)
    if not path.is_absolute():
        path = Path(cwd) / path
    return path.absolute()


def _hint_take_over(link: Path) -> str:
    return (f"tether serves only a `current` symlink it made, naming a release under {link.parent / 'releases'}/; "
            f"nothing was changed. If tether should manage {link.parent}, remove {link} and deploy again")


def resolve_current(target: Path, *, must_exist: bool = True) -> Path | None:
    """The release directory DIR/current names, or None when there is no `current` at all.

    `current` must be a symlink that resolves (every hop followed) to a direct child directory
    of DIR/releases/ other than a `.partial` build. Anything else, an absolute link to a copy
    elsewhere, `../x`, a chain that leaves releases/, a plain directory or file, was put there
    by someone other than tether: deploy, verify and serve all refuse it (IntegrityError) rather
    than trust, serve or replace it. With `must_exist=False` (deploy), a link of tether's own
    shape whose release directory has gone is accepted: deploy rebuilds it."""
    link = target / "current"
    if not os.path.lexists(link):
        return None
    if not link.is_symlink():
        kind = "directory" if link.is_dir() else "file"
        raise IntegrityError(f"{link} is a {kind}, not the symlink into {target / 'releases'}/ that tether makes",
                             hint=_hint_take_over(link))
    releases = os.path.realpath(target / "releases")
    real = os.path.realpath(link)
    parent, name = os.path.split(real)
    if parent != releases or not name or name.endswith(".partial"):
        where = "an unfinished build" if parent == releases and name.endswith(".partial") else real
        to = os.readlink(link)
        raise IntegrityError(f"{link} points to {to}" + (f", which resolves to {where}" if where != to else "")
                             + f", not to a release directory in {target / 'releases'}/",
                             hint=_hint_take_over(link))
    if os.path.isdir(real):
        return Path(real)
    if os.path.lexists(real):
        raise IntegrityError(f"{link} names {real}, which is not a directory", hint=_hint_take_over(link))
    if must_exist:
        raise IntegrityError(f"{link} names releases/{name}, which does not exist",
                             hint=f"deploy again to rebuild it: tether deploy --env ENV --target {target}")
    return Path(real)


def current_release(target: Path, *, must_exist: bool = False) -> str | None:
    """The id of the release DIR/current names (see resolve_current), or None."""
    real = resolve_current(target, must_exist=must_exist)
    return real.name if real is not None else None


def _inside(root: Path, rel, what: str) -> Path:
    """`root / rel` for a path read from a release's own records (.tether/*.json), which anyone
    with write access to DIR can edit: a safe relative path (tether.paths) that, every symlink
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


def read_stamp(release_dir: Path) -> dict | None:
    try:
        return json.loads((release_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None


def stamp_ok(release_dir: Path, manifest: dict) -> bool:
    """A cheap re-check before re-using a materialised release: same manifest, and every file
    has the size and mtime it had when it was verified. `tether verify --target` re-hashes."""
    stamp = read_stamp(release_dir)
    if not stamp or stamp.get("manifest_sha256") != manifest_digest(manifest):
        return False
    for path, (size, mtime_ns) in stamp.get("files", {}).items():
        try:
            st = (release_dir / path).stat()
        except OSError:
            return False
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            return False
    return True


def write_stamp(release_dir: Path, manifest: dict, entries: list[dict], tag_object: str) -> None:
    files = {}
    for e in entries:
        p = release_dir / e["path"]
        if p.is_file():
            st = p.stat()
            files[e["path"]] = (st.st_size, st.st_mtime_ns)
    (release_dir / ".tether").mkdir(exist_ok=True)
    records = {
        "manifest.json": dumps(manifest),
        "entries.json": json.dumps(entries, indent=1),
        "stamp.json": json.dumps({
            "release": f"{manifest['model']}@v{manifest['version']}",
            "tag_object": tag_object,
            "manifest_sha256": manifest_digest(manifest),
            "verified_at": now_iso(),
            "files": files,
        }, indent=1),
    }
    for name, text in records.items():  # read-only, like every file deploy places
        path = release_dir / ".tether" / name
        path.write_text(text)
        os.chmod(path, 0o444)


def switch_current(target: Path, release_id: str) -> None:
    """Atomic: a new symlink, renamed over `current` (rename(2) replaces in one step)."""
    tmp = target / f".current.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(f"releases/{release_id}", tmp)
    os.replace(tmp, target / "current")
    _fsync_dir(target)


def log_event(target: Path, record: dict) -> None:
    line = json.dumps({"time": now_iso(), **record}, sort_keys=True) + "\n"
    fd = os.open(target / "deploy.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def target_lock(target: Path):
    (target / ".tether").mkdir(parents=True, exist_ok=True)
    with open(target / ".tether" / "lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from tether.errors import Conflict

            raise Conflict(f"another deploy is running on {target}", hint="wait for it and try again") from None
        yield


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


def _check_origin(clone: Path, repo_url: str, base: Path) -> None:
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
                     cwd: str | Path = ".") -> Workspace:
    """Where releases come from: the given git URL, cloned into DIR/.tether/repo (whose DVC
    cache then serves every later deploy and rollback) and checked out at the environment's
    head, so dvc.yaml and the DVC remote config are the live release's own; or, without --repo,
    the repository at `cwd` (`-C`, default: where we run). A relative local --repo path is
    relative to `cwd` too, as in `git -C cwd clone`."""
    if repo_url is None:
        return Workspace.discover(cwd)
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
            Git(base).run("clone", "--quiet", "--no-checkout", repo_url, str(tmp))
        except TetherError as exc:
            raise NotFound(f"cannot clone {repo_url}: {exc.message}") from None
        os.replace(tmp, clone)
    else:
        _check_origin(clone, repo_url, base)
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
            git.run("checkout", "--quiet", "--force", "--detach", head)
            return Workspace(clone, git)
    raise NotFound(f"{repo_url} has no branch for environment '{env}'",
                   hint=f"promote a release first: tether promote MODEL@vX.Y.Z --env {env} --push …")


_STORAGE_LIBRARIES = ("dvc", "dvc_data", "dvc_objects", "scmrepo", "fsspec", "s3fs", "aiobotocore", "botocore",
                      "dulwich", "pygit2", "asyncssh", "requests", "aiohttp", "urllib3")


def _reason(exc: BaseException) -> str:
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
def _storage_errors():
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
    from tether import signing
    from tether import signpolicy as sp

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
                signed: tuple[bool, Path | None] = (False, None)) -> tuple[Registry, Release]:
    """The release the environment runs: per the git remote when there is one (a local branch
    may lag behind), else per the local branch. `read_only` (a --dry-run in the user's own
    repository) fetches nothing: origin's branch as last fetched, and no DVC objects."""
    model = ws.model(model)
    branch = ws.branch(model, env)
    head = None
    if read_only:
        head = ws.git.ref(f"refs/remotes/origin/{branch}")
    elif ws.git.remote_url("origin"):
        ws.git.fetch("origin", "refs/tags/*:refs/tags/*")
        if ws.git.fetch_optional("origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}"):
            head = ws.git.ref(f"refs/remotes/origin/{branch}")
    reg = Registry(ws, messages=False)
    if head is None:
        head = reg.env_head(model, env)
    events = reg.events_at(env, head, model) if head else []
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
        rel = reg.resolve_objects([rel], DvcStore(ws.root))[0]
    if rel is None or rel.manifest is None:
        raise IntegrityError(f"{ev.release}, live in {env}, is not a complete release")
    rel.require_trusted("deployed")
    if rel.tree != ev.tree:
        raise IntegrityError(f"{branch}'s tree is not {rel.tag}'s tree",
                             hint="the branch was edited by hand; move it with tether promote/rollback")
    require_signed(ws, reg, model, env, rel, events, *signed)
    return reg, rel


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
) -> DeployResult:
    """`cwd` is the directory tether acts in (`-C`): the repository without --repo, and what a
    relative DIR or --repo path is relative to."""
    if keep < 1:
        raise UsageError("--keep must be at least 1 (the live release)")
    target = resolve_target(target, cwd)
    signed = _host_signing(require_signatures, allowed_signers, repo_url, cwd)
    # A `current` tether did not make is refused before anything is created or locked.
    current_release(target)
    if dry_run:
        return _dry_run(target, env, repo_url, model, cwd, signed)
    try:
        target.mkdir(parents=True, exist_ok=True)
        (target / "releases").mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to {target}: {exc.strerror}") from None
    if not os.access(target, os.W_OK):
        raise UsageError(f"cannot write to {target}: permission denied")
    with target_lock(target):
        previous = current_release(target)  # again, under the lock
        ws = source_workspace(target, repo_url, env, model, progress, cwd=cwd)
        with _storage_errors():
            _reg, rel = plan_source(ws, model, env, signed=signed)
        manifest = rel.manifest
        release_id = rel.tag.replace("/", "--")
        final = target / "releases" / release_id
        record = {"env": env, "from": previous, "to": release_id, "release": rel.tag, "commit": rel.commit}

        if previous == release_id and final.exists() and stamp_ok(final, manifest):
            return DeployResult(env, rel.tag, previous, "noop", str(final), [])
        try:
            if final.exists() and stamp_ok(final, manifest):
                outcome = "switched"
            else:
                outcome = "deployed"
                with _storage_errors():
                    _build(ws, rel, final, full=full, smoke=smoke, progress=progress)
            switch_current(target, release_id)
        except BaseException as exc:  # including KeyboardInterrupt: record it, leave current alone
            with contextlib.suppress(Exception):
                log_event(target, {**record, "outcome": "failed", "error": str(exc)[:500]})
            raise
        # the log line is the anchor `tether serve` checks a release's recorded manifest against
        log_event(target, {**record, "outcome": outcome, "manifest_sha256": manifest_digest(manifest)})
        pruned = prune(target, keep, protect={release_id, previous})
        return DeployResult(env, rel.tag, previous, outcome, str(final), pruned)


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


def _dry_run(target: Path, env: str, repo_url: str | None, model: str | None, cwd: str | Path = ".",
             signed: tuple[bool, Path | None] = (False, None)) -> DeployResult:
    """What deploy would do, touching nothing in DIR (a --repo clone goes to a temp dir)."""
    import tempfile

    clone = target / ".tether" / "repo"
    if repo_url and (clone / ".git").exists():
        _check_origin(clone, repo_url, Path(cwd).absolute())  # the real run would refuse
    with tempfile.TemporaryDirectory(prefix="tether-dry-run-") as tmp:
        ws = source_workspace(Path(tmp), repo_url, env, model, cwd=cwd) if repo_url else Workspace.discover(cwd)
        with _storage_errors():  # a --repo clone is our own temp copy; the user's repository is only read
            _reg, rel = plan_source(ws, model, env, read_only=not repo_url, signed=signed)
        release_id = rel.tag.replace("/", "--")
        final = target / "releases" / release_id
        previous = current_release(target)
        if previous == release_id and final.exists() and stamp_ok(final, rel.manifest):
            outcome = "would-noop"
        elif final.exists() and stamp_ok(final, rel.manifest):
            outcome = "would-switch"
        else:
            outcome = "would-deploy"
        return DeployResult(env, rel.tag, previous, outcome, str(final), [])


def _build(ws: Workspace, rel: Release, final: Path, *, full: bool, smoke: bool, progress) -> None:
    manifest = rel.manifest
    store = DvcStore(ws.root)
    eval_paths: tuple[str, ...] = ()
    if smoke:
        from tether.smoke import eval_data_path

        eval_paths = (eval_data_path(manifest, ws.settings(rel.name.model)),)
    entries = materialise.needed(manifest, full=full, data_paths=eval_paths)
    if progress:
        progress(f"fetching and checking {len(entries)} DVC object(s) for {rel.tag} …")
    # Every object must be here before the target directory is touched.
    materialise.ensure_cached(store, entries, progress)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        _rmtree(partial)  # a leftover of a killed deploy
    if final.exists():
        _rmtree(final)  # materialised once, but its stamp no longer verifies
    if progress:
        progress(f"materialising {rel.tag} into {partial} and verifying every digest …")
    placed = materialise.materialise(ws.git, store, manifest, partial, entries)
    # what `verify --target` re-checks later: the manifest's digest, or the one just verified
    # against DVC's md5 on the way in (a directory's tree digest, a hand-tagged release's file)
    entries = [{**e, "sha256": e.get("sha256") or placed.get(e["path"])} for e in entries]
    write_stamp(partial, manifest, entries, rel.tag_object)
    if smoke:  # the way `tether serve` will run it: a worker in the release directory
        from tether.workerproc import smoke_in_worker

        if progress:
            progress(f"smoke-testing {rel.tag} in a worker …")
        smoke_in_worker(partial, eval_paths[0])
    _fsync_tree(partial)
    os.replace(partial, final)
    _fsync_dir(final.parent)


def _rmtree(path: Path) -> None:
    def onerror(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o755)
        func(p)

    shutil.rmtree(path, onerror=onerror)


def prune(target: Path, keep: int, protect: set) -> list[str]:
    """Keep the newest `keep` materialised releases (by when they were last made live), never
    the live one or the one before it (the rollback target)."""
    releases = target / "releases"
    order: list[str] = []
    try:
        for line in (target / "deploy.log").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("outcome") in ("deployed", "switched") and rec.get("to"):
                if rec["to"] in order:
                    order.remove(rec["to"])
                order.append(rec["to"])
    except (OSError, ValueError):
        return []
    present = [p.name for p in releases.iterdir() if p.is_dir() and not p.name.endswith(".partial")]
    ranked = [r for r in reversed(order) if r in present] + [r for r in present if r not in order]
    pruned = []
    for name in ranked[keep:]:
        if name in protect:
            continue
        _rmtree(releases / name)
        pruned.append(name)
    return pruned


def logged_manifest_digest(target: Path, release_id: str) -> str | None:
    """The manifest digest deploy.log recorded when `release_id` was last made live, if any."""
    found = None
    try:
        lines = (target / "deploy.log").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("to") == release_id and rec.get("outcome") in ("deployed", "switched") \
                and rec.get("manifest_sha256"):
            found = rec["manifest_sha256"]
    return found


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
    tree = git_tree_id(root, exclude={".tether", *listed})
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
    rel = Registry(Workspace(clone, git), messages=False).by_tag(tag)
    if rel is not None and rel.manifest is not None and not rel.unresolved \
            and manifest_digest(rel.manifest) != digest:
        raise IntegrityError(f"{root.name}: its recorded manifest is not the one derived from {tag}'s commit in {clone}",
                             hint=hint)


def verify_target(target: str | Path, cwd: str | Path = ".") -> dict:
    """Recompute every digest of DIR/current against the manifest it was deployed from. Only a
    `current` tether made is verified (see resolve_current), and only paths inside it are read."""
    target = resolve_target(target, cwd)
    root = resolve_current(target)
    if root is None:
        raise NotFound(f"{target} has no current release", hint="deploy one: tether deploy --env … --target …")
    manifest, entries, bundle = read_release(root)
    materialise.verify_outputs(entries, root)
    from tether.bundle import is_bundle, verify_bundle

    if is_bundle(bundle):  # any other model format is covered by the release's digests above
        verify_bundle(bundle)
    return {"target": str(target), "release": f"{manifest.get('model')}@v{manifest.get('version')}",
            "files": len(entries), "ok": True}
