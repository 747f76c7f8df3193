"""The serving directory DIR itself: what `current` names, the atomic switch, the deploy log,
one deploy at a time, and pruning old releases (see deploy/command.py for the layout)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

from tether.clock import now_iso
from tether.errors import Conflict, IntegrityError, UsageError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



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


def switch_current(target: Path, release_id: str) -> None:
    """Atomic: a new symlink, renamed over `current` (rename(2) replaces in one step)."""
    tmp = target / f".current.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(f"releases/{release_id}", tmp)
    os.replace(tmp, target / "current")
    fsync_dir(target)


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
            raise Conflict(f"another deploy is running on {target}", hint="wait for it and try again") from None
        yield


def rmtree(path: Path) -> None:
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
        rmtree(releases / name)
        pruned.append(name)
    return pruned


def _log_records(target: Path):
    """The deploy log's JSON records, oldest first; unreadable lines and a missing log are skipped."""
    try:
        lines = (target / "deploy.log").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            yield rec


def logged_manifest_digest(target: Path, release_id: str) -> str | None:
    """The manifest digest deploy.log recorded when `release_id` was last made live, if any."""
    found = None
    for rec in _log_records(target):
        if rec.get("to") == release_id and rec.get("outcome") in ("deployed", "switched") and rec.get("manifest_sha256"):
            found = rec["manifest_sha256"]
    return found


def serving(target: Path, release_id: str | None) -> dict | None:
    """The deploy log's last record that made `release_id` (what `current` names) live: its
    "env" and "release" say which environment DIR serves. None without one."""
    if release_id is None:
        return None
    found = None
    for rec in _log_records(target):
        if rec.get("outcome") in ("deployed", "switched") and isinstance(rec.get("env"), str):
            found = rec
    return found if found is not None and found.get("to") == release_id else None


def refuse_other_env(target: Path, served: dict | None, env: str, model: str | None, force: bool) -> str | None:
    """Conflict (exit 4) when DIR serves another environment (or another model's), unless
    `force`; returns what `force` overrode ("production (fraud-detector@v1.1.0)"), for the log."""
    if served is None:
        return None
    their_model = str(served.get("release", "")).partition("@")[0] or None
    if served["env"] == env and (model is None or their_model is None or their_model == model):
        return None
    was = f"{served['env']} ({served.get('release') or served.get('to')})"
    if force:
        return was
    what = f"{model}'s {env}" if model and their_model and their_model != model else env
    raise Conflict(f"{target} serves {was}; deploying {what} there would replace it. Nothing was changed",
                   hint=f"deploy {env} to its own --target, or pass --force to make {target} serve {what} "
                        f"(recorded in its deploy.log)")
