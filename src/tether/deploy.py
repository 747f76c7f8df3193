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

from tether import materialise
from tether.digest import sha256_bytes
from tether.dvcstore import DvcStore
from tether.errors import IntegrityError, NotFound, TetherError, UsageError
from tether.gitrepo import Git
from tether.manifest import dumps
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


def current_release(target: Path) -> str | None:
    link = target / "current"
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


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
    (release_dir / ".tether" / "manifest.json").write_text(dumps(manifest))
    (release_dir / ".tether" / "entries.json").write_text(json.dumps(entries, indent=1))
    (release_dir / STAMP).write_text(json.dumps({
        "release": f"{manifest['model']}@v{manifest['version']}",
        "tag_object": tag_object,
        "manifest_sha256": manifest_digest(manifest),
        "verified_at": now_iso(),
        "files": files,
    }, indent=1))


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


def source_workspace(target: Path, repo_url: str | None, env: str, model: str | None, progress=None) -> Workspace:
    """Where releases come from: the given git URL, cloned into DIR/.tether/repo (whose DVC
    cache then serves every later deploy and rollback) and checked out at the environment's
    head, so dvc.yaml and the DVC remote config are the live release's own; or, without --repo,
    the repository we are run from."""
    if repo_url is None:
        return Workspace.discover(".")
    clone = target / ".tether" / "repo"
    git = Git(clone)
    if not (clone / ".git").exists():
        if progress:
            progress(f"cloning {repo_url} …")
        tmp = clone.with_name("repo.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            Git(target).run("clone", "--quiet", "--no-checkout", repo_url, str(tmp))
        except TetherError as exc:
            raise NotFound(f"cannot clone {repo_url}: {exc.message}") from None
        os.replace(tmp, clone)
    git.fetch("origin", "+refs/heads/*:refs/remotes/origin/*")
    names = [f"{model}/{env}"] if model else []
    names += [env] + [r.name[len("refs/remotes/origin/"):] for r in git.for_each_ref("refs/remotes/origin/")
                      if r.name.endswith(f"/{env}") and r.name.count("/") > 3]
    for name in names:
        head = git.ref(f"refs/remotes/origin/{name}")
        if head:
            git.run("checkout", "--quiet", "--force", "--detach", head)
            return Workspace(clone, git)
    raise NotFound(f"{repo_url} has no branch for environment '{env}'",
                   hint=f"promote a release first: tether promote MODEL@vX.Y.Z --to {env} --push …")


def plan_source(ws: Workspace, model: str | None, env: str) -> tuple[Registry, Release]:
    """The release the environment runs: per the git remote when there is one (a local branch
    may lag behind), else per the local branch."""
    model = ws.model(model)
    branch = ws.branch(model, env)
    head = None
    if ws.git.remote_url("origin"):
        ws.git.fetch("origin", "refs/tags/*:refs/tags/*")
        if ws.git.fetch_optional("origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}"):
            head = ws.git.ref(f"refs/remotes/origin/{branch}")
    reg = Registry(ws, messages=False)
    if head is None:
        head = reg.env_head(model, env)
    events = reg.events_at(env, head, model) if head else []
    if not events:
        raise NotFound(f"environment '{env}' of {model} has no release yet",
                       hint=f"promote one first: tether promote {model}@vX.Y.Z --to {env} …")
    ev = events[0]
    if not ev.release:
        raise IntegrityError(f"{branch}'s head {ev.commit[:12]} was committed outside tether and matches no release",
                             hint=f"move {env} to a release with tether promote/rollback; nothing was deployed")
    reg.check_tag_integrity([ev])
    rel = reg.by_tag(ev.release)
    if rel is not None and rel.unresolved:
        # a host with an empty cache: fetch the small objects (threshold, metrics, listings) the
        # derivation needs, so the manifest a deploy records is the same on every host
        rel = reg.resolve_objects([rel], DvcStore(ws.root))[0]
    if rel is None or rel.manifest is None:
        raise IntegrityError(f"{ev.release}, live in {env}, is not a complete release")
    if rel.tree != ev.tree:
        raise IntegrityError(f"{branch}'s tree is not {rel.tag}'s tree",
                             hint="the branch was edited by hand; move it with tether promote/rollback")
    return reg, rel


def deploy(
    target: Path,
    env: str,
    *,
    repo_url: str | None = None,
    model: str | None = None,
    keep: int = 3,
    full: bool = False,
    smoke: bool = False,
    dry_run: bool = False,
    progress=None,
) -> DeployResult:
    if keep < 1:
        raise UsageError("--keep must be at least 1 (the live release)")
    target = Path(target).absolute()
    if dry_run:
        return _dry_run(target, env, repo_url, model)
    try:
        target.mkdir(parents=True, exist_ok=True)
        (target / "releases").mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to {target}: {exc.strerror}") from None
    if not os.access(target, os.W_OK):
        raise UsageError(f"cannot write to {target}: permission denied")
    with target_lock(target):
        ws = source_workspace(target, repo_url, env, model, progress)
        _reg, rel = plan_source(ws, model, env)
        manifest = rel.manifest
        release_id = rel.tag.replace("/", "--")
        final = target / "releases" / release_id
        previous = current_release(target)
        record = {"env": env, "from": previous, "to": release_id, "release": rel.tag, "commit": rel.commit}

        if previous == release_id and final.exists() and stamp_ok(final, manifest):
            return DeployResult(env, rel.tag, previous, "noop", str(final), [])
        try:
            if final.exists() and stamp_ok(final, manifest):
                outcome = "switched"
            else:
                outcome = "deployed"
                _build(ws, rel, final, full=full, smoke=smoke, progress=progress)
            switch_current(target, release_id)
        except BaseException as exc:  # including KeyboardInterrupt: record it, leave current alone
            with contextlib.suppress(Exception):
                log_event(target, {**record, "outcome": "failed", "error": str(exc)[:500]})
            raise
        log_event(target, {**record, "outcome": outcome})
        pruned = prune(target, keep, protect={release_id, previous})
        return DeployResult(env, rel.tag, previous, outcome, str(final), pruned)


def _dry_run(target: Path, env: str, repo_url: str | None, model: str | None) -> DeployResult:
    """What deploy would do, touching nothing in DIR (a --repo clone goes to a temp dir)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tether-dry-run-") as tmp:
        ws = source_workspace(Path(tmp), repo_url, env, model) if repo_url else Workspace.discover(".")
        _reg, rel = plan_source(ws, model, env)
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
    materialise.materialise(ws.git, store, manifest, partial, entries)
    if smoke:
        from tether.bundle import load_bundle, smoke_test
        from tether.smoke import read_table

        bundle = load_bundle(partial / manifest["artifact"]["path"])
        smoke_test(bundle, read_table(partial / eval_paths[0]))
    write_stamp(partial, manifest, entries, rel.tag_object)
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


def verify_target(target: Path) -> dict:
    """Recompute every digest of DIR/current against the manifest it was deployed from."""
    target = Path(target).absolute()
    live = current_release(target)
    if live is None:
        raise NotFound(f"{target} has no current release", hint="deploy one: tether deploy --env … --target …")
    root = target / "releases" / live
    try:
        manifest = json.loads((root / ".tether" / "manifest.json").read_text())
        entries = json.loads((root / ".tether" / "entries.json").read_text())
    except (OSError, ValueError):
        raise IntegrityError(f"{root} has no readable tether stamp: it was not deployed by tether") from None
    materialise.verify_outputs(entries, root)
    from tether.bundle import verify_bundle

    verify_bundle(root / manifest["artifact"]["path"])
    return {"target": str(target), "release": f"{manifest['model']}@v{manifest['version']}",
            "files": len(entries), "ok": True}

