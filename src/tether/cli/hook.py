"""`tether hook`: server-side enforcement for self-hosted git (see tether.hook)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from tether.cli.base import JSON, global_options, app, emit, progress

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
    path, name = do_install(target, cmd, dvc, force, branch)
    emit({"path": str(path), "command": cmd, "policy_branch": name}, as_json,
         f"installed {path}\n  it runs: {' '.join(cmd)} hook pre-receive" + (f" --dvc-repo {dvc}" if dvc else "")
         + f" --policy-branch {name}\n  the policy (dvc.yaml, .tether/) is read from branch {name} as it is before each push"
         + "\n  test it: a push that moves a release tag is now refused")
