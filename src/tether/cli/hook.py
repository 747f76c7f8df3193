"""`tether hook`: server-side enforcement for self-hosted git (see tether.commands.hook), the
post-receive hook's events (tether.commands.event_hook), and `tether events`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from tether.cli.base import JSON, global_options, app, emit, open_workspace, progress

hook_app = typer.Typer(no_args_is_help=True, help="Server-side git hooks: tether's rules where teams push.")
app.add_typer(hook_app, name="hook")


def _tether_command() -> list[str]:
    """This tether: the venv's console script beside the interpreter, else `python -m`."""
    script = Path(sys.executable).parent / "tether"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tether.cli"]


@hook_app.command("pre-receive")
def pre_receive(
    dvc_repo: Optional[str] = typer.Option(None, "--dvc-repo", metavar="DIR",
                                           help="A DVC project whose default remote is the team's: release tags' objects are checked there."),
    policy_branch: Optional[str] = typer.Option(None, "--policy-branch", metavar="BRANCH",
                                                help="The branch whose dvc.yaml and .tether/ hold the policy (default: HEAD's)."),
) -> None:
    """Run by git in a bare repository: reads `<old> <new> <ref>` lines on stdin and refuses
    (exit 6) a push that breaks tether's rules. Nothing is updated when it refuses."""
    from tether.errors import IntegrityError
    from tether.adapters.gitbase import ZERO
    from tether.commands.hook import check_push, parse_updates

    bare = Path(os.environ.get("GIT_DIR") or global_options().chdir).absolute()
    updates = parse_updates(sys.stdin.read())
    refusals = check_push(bare, updates, Path(dvc_repo).absolute() if dvc_repo else None, policy_branch)
    if not dvc_repo and any(u.ref.startswith("refs/tags/") and u.old == ZERO != u.new and "@v" in u.ref
                            for u in updates):
        progress("tether: release tags' DVC objects not checked (install the hook with --dvc-repo DIR)")
    for r in refusals:
        progress(f"tether: refused {r}")
    if refusals:
        raise IntegrityError(f"tether refused the push: {len(refusals)} problem(s), nothing was updated",
                             hint="see the lines above; releases never move and environments move only by tether")


@hook_app.command("install")
def install(
    bare: str = typer.Argument(..., help="The bare repository teams push to."),
    dvc_repo: Optional[str] = typer.Option(None, "--dvc-repo", metavar="DIR",
                                           help="A DVC project whose default remote is the team's."),
    branch: Optional[str] = typer.Option(None, "--branch", metavar="BRANCH",
                                         help="The branch holding dvc.yaml and .tether/ (the policy); default: the one HEAD names."),
    force: bool = typer.Option(False, "--force", help="Replace a pre-receive hook that is not tether's."),
    print_only: bool = typer.Option(False, "--print", help="Print the hook instead of writing it."),
    events_secret: Optional[str] = typer.Option(
        None, "--events-secret", metavar="FILE",
        help="Also install hooks/post-receive: send each pushed move, release and GTO tag as a CloudEvent, "
             "HMAC-signed with the secret in FILE, to the URLs dvc.yaml's meta.tether.events names."),
    as_json: bool = JSON,
) -> None:
    """Install `hooks/pre-receive` calling this tether, or print how (--print)."""
    from tether.commands.hook_policy import hook_script, install_branch
    from tether.commands.hook_policy import install as do_install

    cmd = _tether_command()
    root = Path(global_options().chdir)
    dvc = (root / dvc_repo).absolute() if dvc_repo else None
    target = (root / bare).absolute()
    if print_only:
        text = hook_script(cmd, dvc, install_branch(target, branch))
        emit({"hook": text}, as_json, f"# write this to {bare}/hooks/pre-receive and chmod 755 it:\n{text.rstrip()}")
        return
    secret = (root / events_secret).absolute() if events_secret else None
    if secret is not None:
        from tether.commands.event_hook import check_secret

        check_secret(secret)  # before anything is written
    path, name = do_install(target, cmd, dvc, force, branch)
    post = None
    if secret is not None:
        from tether.commands.event_hook import install as install_events

        post = install_events(target, cmd, secret, name, force)
    emit({"path": str(path), "command": cmd, "policy_branch": name, "post_receive": str(post) if post else None},
         as_json,
         f"installed {path}\n  it runs: {' '.join(cmd)} hook pre-receive" + (f" --dvc-repo {dvc}" if dvc else "")
         + f" --policy-branch {name}\n  the policy (dvc.yaml, .tether/) is read from branch {name} as it is before each push"
         + "\n  test it: a push that moves a release tag is now refused"
         + (f"\ninstalled {post}\n  it queues each pushed move, release and GTO tag as a CloudEvent for the URLs "
            "meta.tether.events names (signed with the secret); deliveries are logged in tether/deliveries.log"
            if post else ""))


@hook_app.command("post-receive")
def post_receive(
    secret_file: str = typer.Option(..., "--secret-file", metavar="FILE", help="The HMAC secret deliveries are signed with."),
    policy_branch: Optional[str] = typer.Option(None, "--policy-branch", metavar="BRANCH",
                                                help="The branch whose dvc.yaml names the webhooks (default: HEAD's)."),
) -> None:
    """Run by git after a push: queues the push's events for the webhooks and starts the
    deliverer in the background. Never fails the push: a problem is printed and it exits 0."""
    from tether.adapters.webhook import spool, start_deliverer
    from tether.commands.event_hook import push_events
    from tether.commands.hook import parse_updates
    from tether.errors import TetherError

    bare = Path(os.environ.get("GIT_DIR") or global_options().chdir).absolute()
    try:
        items = push_events(bare, parse_updates(sys.stdin.read()), policy_branch)
        if items:
            spool(bare, items)
            start_deliverer([*_tether_command(), "-C", str(bare), "hook", "deliver", "--secret-file",
                             str(Path(secret_file).absolute())], bare)
            progress(f"tether: {len(items)} event delivery(ies) queued")
    except (TetherError, OSError) as exc:
        progress(f"tether: events not queued: {getattr(exc, 'message', exc)}")


@hook_app.command("deliver")
def deliver(
    secret_file: str = typer.Option(..., "--secret-file", metavar="FILE", help="The HMAC secret deliveries are signed with."),
    give_up_after: float = typer.Option(600.0, "--give-up-after", metavar="SECONDS",
                                        help="Stop retrying after this long; what is left waits for the next push."),
    as_json: bool = JSON,
) -> None:
    """Send what the outbox (tether/outbox/ in the bare repository) holds, retrying with back-off."""
    from tether.adapters.webhook import drain
    from tether.commands.event_hook import check_secret

    bare = Path(os.environ.get("GIT_DIR") or global_options().chdir).absolute()
    res = drain(bare, check_secret(Path(secret_file)), give_up_after)
    emit({"sent": res.sent, "failed_attempts": res.failed_attempts, "left": len(res.left), "busy": res.busy}, as_json,
         f"sent {res.sent}, {res.failed_attempts} failed attempt(s), {len(res.left)} left in the outbox"
         + (" (another deliverer is sending them)" if res.busy else ""))


@app.command("events")
def events(
    since: Optional[str] = typer.Option(None, "--since", metavar="TIME",
                                        help="Only events from this ISO-8601 time on (e.g. 2026-12-05T10:00:00Z)."),
    model: Optional[str] = typer.Option(None, "--model", help="One model's events."),
    as_json: bool = JSON,
) -> None:
    """Every move, release and GTO assignment as the CloudEvents the post-receive hook sends,
    oldest first, replayed from history (a receiver that was down catches up from here)."""
    from tether.commands.events import since as events_since
    from tether.core.history import parse_time

    when = parse_time(since) if since else None
    out = events_since(open_workspace(), when, model)
    text = "\n".join(f"{e['time']}  {e['type']:<28} {e['subject']:<24} {e['data'].get('release', '')}" for e in out)
    emit(out, as_json, text or "no events" + (f" since {since}" if since else ""))
