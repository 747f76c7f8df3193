"""Commands that move environments or reclaim space: promote, rollback, history, gc."""

from __future__ import annotations

from typing import Optional

import typer

from tether.cli.base import APPROVER, DRY, JSON, MODEL_OPT, QUIET, approver_of, open_workspace, app, emit, one_of, progress
from tether.cli.render import gate_line, history_output
from tether.errors import UsageError

# -- environments --------------------------------------------------------------------------
def _move(action: str, **kw) -> None:
    from tether.commands.move import execute_move, plan_move

    as_json, dry_run, quiet = kw.pop("as_json"), kw.pop("dry_run"), kw.pop("quiet")
    ws = open_workspace()
    kw["approver"] = approver_of(ws, kw["approver"])
    if not as_json and not quiet:
        progress(f"checking gates for {action}: check, " + ("rolled-back, regression, staging-first, " if action == "promote" else "")
                 + "smoke test …")
    plan = plan_move(ws, action=action, read_only=dry_run, **kw)
    frm = ((plan.current.release or f"{plan.current.commit[:12]} (no release)") if plan.current else "(empty)")
    gate_lines = [gate_line(g) for g in plan.gates]
    if dry_run:
        emit({"dry_run": True, **plan.as_dict()}, as_json,
             "\n".join([f"would {action} {plan.env}: {frm} → {plan.release.tag}", *([] if quiet else gate_lines)]))
        return
    done = execute_move(ws, plan)
    for step in done.published if not (as_json or quiet) else ():
        progress(step)
    moved = (f"{plan.env}: {frm} → {plan.release.tag} ({action}, commit {done.commit[:12]}"
             + (", pushed" if plan.push else "") + ")")
    lines = [] if quiet else [*gate_lines]
    lines.append(moved)
    if done.local_only:
        lo = done.local_only
        serve = (f"still serve {lo['origin_release'] or 'what origin/' + lo['branch'] + ' holds'}"
                 + f"; `tether deploy --env {plan.env}` from this clone refuses until it is pushed"
                 if lo["origin_has_branch"] else f"serve nothing (origin has no {lo['branch']})")
        note = (f"local only: not pushed; hosts that deploy from origin {serve}. "
                f"Publish it: {lo['push']} (or move with --push)")
        if quiet and not as_json:
            progress(f"warning: {note}")  # -q keeps warnings: the move is not where hosts look yet
        elif not quiet:
            lines.append(note)
    emit({"dry_run": False, **done.as_dict()}, as_json, "\n".join(lines))


@app.command()
def promote(
    refs: list[str] = typer.Argument(..., metavar="REF...",
                                     help="model@vX.Y.Z, model@latest, or an environment to copy from; several "
                                          "releases of different models move together or not at all."),
    env: Optional[str] = typer.Option(None, "--env", help="Environment to move (required)."),
    old_to: Optional[str] = typer.Option(None, "--to", hidden=True, help="Deprecated: use --env."),
    approver: Optional[str] = APPROVER,
    reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
    model: Optional[str] = MODEL_OPT,
    push: bool = typer.Option(False, "--push", help="Fast-forward push to origin; a concurrent move is rejected."),
    allow_regression: Optional[str] = typer.Option(
        None, "--allow-regression", metavar="REASON", help="Promote despite a metric regression (reason recorded)."),
    skip_staging: Optional[str] = typer.Option(
        None, "--skip-staging", metavar="REASON", help="Promote to production without staging first (reason recorded)."),
    allow_incomplete: Optional[str] = typer.Option(None, "--allow-incomplete", metavar="REASON",
                                                   help="Promote a release missing one of the five parts (recorded)."),
    override_rollback: Optional[str] = typer.Option(
        None, "--override-rollback", metavar="TEXT",
        help="Promote a release this environment was rolled back away from: TEXT quotes that rollback's reason "
             "and says why it is safe now (recorded)."),
    sign: bool = typer.Option(False, "--sign", help="Sign with your git signing configuration (gpg.format, user.signingkey)."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Gate a release, then move an environment to it (compare-and-swap)."""
    env = one_of(env, old_to, "--env", "promote --to")
    if env is None:
        raise UsageError("promote needs --env ENV: the environment to move", hint="e.g. --env staging")
    kw = dict(approver=approver, reason=reason, push=push, allow_regression=allow_regression,
              skip_staging=skip_staging, allow_incomplete=allow_incomplete, override_rollback=override_rollback,
              sign=sign, dry_run=dry_run, as_json=as_json, quiet=quiet)
    if len(refs) > 1:
        if model is not None:
            raise UsageError("--model names one model; several REFs name their models themselves")
        _move_group("promote", env=env, refs=list(refs), models=[None] * len(refs), **kw)
        return
    _move("promote", model=model, env=env, release_ref=refs[0], **kw)


@app.command()
def rollback(
    env: str = typer.Option("production", "--env", help="Environment to move back."),
    target: Optional[str] = typer.Option(None, "--release", help="A release; default: the last known good one."),
    old_to: Optional[str] = typer.Option(None, "--to", hidden=True, help="Deprecated: use --release."),
    approver: Optional[str] = APPROVER,
    reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
    model: Optional[str] = MODEL_OPT,
    push: bool = typer.Option(False, "--push", help="Push the environment branch (compare-and-swap on origin)."),
    sign: bool = typer.Option(False, "--sign", help="Sign with your git signing configuration (gpg.format, user.signingkey)."),
    only: bool = typer.Option(False, "--only", help="Roll back this model alone, though it was promoted in a group."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Move an environment back to the last known good release, or to --release REF. A move
    made in a group (`promote --env E a@v1 b@v2`) is rolled back with its group."""
    target = one_of(target, old_to, "--release", "rollback --to")
    kw = dict(approver=approver, reason=reason, push=push, sign=sign, dry_run=dry_run, as_json=as_json, quiet=quiet)
    if target is None and not only:
        from tether.commands.move_group import grouped_with

        ws = open_workspace()
        gid, members = grouped_with(ws, ws.model(model), env)
        if len(members) > 1 and not quiet:
            progress(f"{env}: the live move was made in group {gid} with "
                     + ", ".join(m.release for m in members) + ": rolling back the group (--only: this model alone)")
        if len(members) > 1:
            _move_group("rollback", env=env, refs=[None] * len(members), models=[m.model for m in members], **kw)
            return
    _move("rollback", model=model, env=env, release_ref=target, **kw)


def _move_group(action: str, *, env: str, refs: list, models: list, **kw) -> None:
    from tether.commands.move_group import execute_group, plan_group

    as_json, dry_run, quiet = kw.pop("as_json"), kw.pop("dry_run"), kw.pop("quiet")
    ws = open_workspace()
    kw["approver"] = approver_of(ws, kw["approver"])
    if not as_json and not quiet:
        progress(f"checking gates for {action} of {len(refs)} releases together …")
    plans = plan_group(ws, action=action, env=env, refs=refs, models=models, read_only=dry_run, **kw)
    lines = []
    for plan in plans:
        frm = (plan.current.release or f"{plan.current.commit[:12]} (no release)") if plan.current else "(empty)"
        lines += [] if quiet else [f"{plan.model}:", *(f"  {gate_line(g)}" for g in plan.gates),
                                   f"  {plan.branch}: {frm} → {plan.release.tag}"]
    if dry_run:
        emit({"dry_run": True, "moves": [p.as_dict() for p in plans]}, as_json,
             "\n".join([f"would {action} {env}, all or none:", *lines]))
        return
    done = execute_group(ws, plans)
    for res in done:
        for step in res.published if not (as_json or quiet) else ():
            progress(step)
    gid = done[0].plan.notes.get("Tether-Group", "")
    emit({"dry_run": False, "group": gid, "moves": [r.as_dict() for r in done]}, as_json,
         "\n".join([*lines, f"{env}: moved {len(done)} branches as one ({action}, group {gid}"
                     + (", pushed atomically" if plans[0].push else "") + ")"]))


@app.command()
def history(
    env: Optional[str] = typer.Option(None, "--env", help="One environment (default: every environment)."),
    at: Optional[str] = typer.Option(None, "--at", help="ISO-8601: which release was live then."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """The audit trail of each environment, newest first."""
    from tether.library import reads

    data = reads.history(open_workspace(), model, env, at).as_dict()  # tether.api.history's record
    typer.echo(history_output(data, as_json))
    _refuse(data)


def _refuse(data: dict) -> None:
    """After the trail is shown: a move the signing policy rejects is exit 6, naming it."""
    if data.get("refused"):
        from tether.errors import IntegrityError

        raise IntegrityError(data["refused"], hint="see the moves marked REFUSED in the history")


@app.command()
def gc(
    keep: int = typer.Option(3, "--keep", help="Kept for scripts: every release a tag or branch reaches is kept anyway."),
    cloud: bool = typer.Option(False, "--cloud", help="Also delete from the DVC remote."),
    grace: str = typer.Option("14d", "--grace", help="Never delete an object younger than this (e.g. 14d, 36h, now)."),
    prune_now: bool = typer.Option(False, "--prune-now", help="No grace period (a publication in progress elsewhere may lose objects)."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Garbage-collect DVC objects no branch, tag or the workspace needs (see docs/gc-and-publishing.md)."""
    from tether.commands.gc import execute_gc, parse_grace, plan_gc

    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    seconds = 0 if prune_now else parse_grace(grace)
    ws = open_workspace()
    if seconds == 0:
        progress("warning: no grace period: objects a `release --push` or `promote --push` in another clone has "
                 "uploaded but not yet tagged on origin may be deleted")
    plan = plan_gc(ws, newest=keep, cloud=cloud, grace=seconds)
    text = (("read every branch and tag on origin first\n" if plan.fetched else "")
            + f"protected: {len(plan.protected)} release(s), {plan.commits} commit(s) reached by a branch or tag\n")
    for name, reasons in ([("cache", plan.kept_cache)] + ([("remote", plan.kept_remote)] if cloud else [])):
        for why, n in sorted(reasons.items()):
            text += f"  {'would keep' if dry_run else 'kept'} {n} {name} object(s): {why}\n"
    if plan.unknown_listings:
        text += f"  {len(plan.unknown_listings)} kept directory output(s) have no file list on the cache or the remote\n"
    text += (f"{'would delete' if dry_run else 'deleting'} {len(plan.cache_delete)} cache object(s)"
             + (f" and {len(plan.remote_delete)} remote object(s)" if cloud else ""))
    if not dry_run:
        if not as_json and not quiet:
            progress(text)

        def batch(done: int, total: int) -> None:
            if not quiet:
                progress(f"deleted {done} of {total} remote object(s)")

        execute_gc(ws, plan, on_batch=batch)  # on stderr, so a killed gc has said how far it got
        text = (f"deleted {len(plan.cache_delete)} cache object(s)"
                + (f" and {len(plan.remote_delete)} remote object(s)" if cloud else ""))
    elif quiet:  # the plan's last line: what it would delete
        text = text.rstrip("\n").rsplit("\n", 1)[-1]
    emit({"dry_run": dry_run, **plan.as_dict()}, as_json, text)

