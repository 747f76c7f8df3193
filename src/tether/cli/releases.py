"""Commands over releases: release, conf apply, list, show, diff, check, status."""

from __future__ import annotations

from typing import Optional

import typer

from tether.cli.base import (DRY, JSON, MODEL_ALL, MODEL_OPT, MODEL_POSITIONAL, QUIET, open_workspace, app, emit, one_of,
                             progress)
from tether.cli.render import check_output, diff_output, gate_line, list_output, show_output, status_output
from tether.errors import TetherError

# -- releases ------------------------------------------------------------------------------
@app.command()
def release(
    old_model: Optional[str] = MODEL_POSITIONAL,
    model: Optional[str] = MODEL_OPT,
    version: Optional[str] = typer.Option(None, "--version", help="Exact version X.Y.Z."),
    bump: Optional[str] = typer.Option(None, "--bump", help="major, minor or patch."),
    message: Optional[str] = typer.Option(None, "-m", "--message", help="Release note."),
    push: bool = typer.Option(False, "--push", help="Push DVC outputs, then the tag."),
    sign: bool = typer.Option(False, "--sign", help="Sign with your git signing configuration (gpg.format, user.signingkey)."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Gate HEAD, then tag it <model>@vX.Y.Z with the manifest."""
    from tether.commands.release import execute_release, plan_release

    model = one_of(model, old_model, "--model", "the positional MODEL")
    ws = open_workspace()
    if not as_json and not quiet:
        progress("checking gates: clean tree, dvc status, params vs conf/, completeness, remote …")
    try:
        plan = plan_release(ws, model, version=version, bump=bump, message=message, push=push, sign=sign)
    except TetherError as exc:
        checked = getattr(exc, "gates", None)
        if dry_run and checked and not as_json:  # a refused dry run still lists every gate it checked
            emit(None, False, "would not release:\n" + "\n".join(gate_line(g) for g in checked))
        raise
    if dry_run:
        lines = [f"would release {plan.tag} ({plan.bump or 'explicit'}: {', '.join(plan.reasons)})"]
        if not quiet:
            lines += [gate_line(g) for g in plan.gates]
            lines += [f"  step: {s}" for s in plan.steps]
        emit({"dry_run": True, **plan.as_dict()}, as_json, "\n".join(lines))
        return
    tag_obj = execute_release(ws, plan)
    if plan.published:
        text = (f"{plan.tag} is already published (its tag is on origin); "
                + (f"uploaded {len(plan.repaired)} output(s) the DVC remote had lost: {', '.join(plan.repaired)}"
                   if plan.repaired else "every DVC object of its commit is on the remote"))
    else:
        text = (f"released {plan.tag} at {plan.commit[:12]} ({plan.bump or 'explicit'}: {', '.join(plan.reasons)})"
                + ("\npushed every DVC output of the commit, then the tag" if push and not quiet else ""))
    emit({"dry_run": False, "tag_object": tag_obj, **plan.as_dict()}, as_json, text)


# -- conf/ ---------------------------------------------------------------------------------
conf_app = typer.Typer(no_args_is_help=True, help="Hydra conf/ and params.yaml.")
app.add_typer(conf_app, name="conf")


def _override_lines(overrides) -> list[str]:
    width = max((len(o.text) for o in overrides), default=0)
    return [f"  {o.text:{width}}  {o.where}" for o in overrides]


@conf_app.command("apply")
def conf_apply(dry_run: bool = DRY, as_json: bool = JSON) -> None:
    """Write the overrides that explain params.yaml (e.g. from `dvc exp run -S`) into conf/."""
    from tether.commands.conf_apply import execute_conf_apply, plan_conf_apply

    ws = open_workspace()
    plan = plan_conf_apply(ws)
    if plan.nothing_to_do:
        emit({"dry_run": dry_run, "written": [], **plan.as_dict()}, as_json,
             "nothing to apply: params.yaml equals the composition of conf/")
        return
    overrides = plan.explanation.overrides
    lines = [f"params.yaml is conf/ composed with {len(overrides)} override(s):", *_override_lines(overrides)]
    if plan.commit_only:
        lines = [f"conf/ already composes to params.yaml, but dvc.lock still records the conf/ of before for stage "
                 f"{plan.compose_stage} (an earlier conf apply stopped before its dvc commit)"]
    if dry_run:
        lines += [e.diff().rstrip("\n") for e in plan.edits]
        lines += [f"  step: {s}" for s in plan.steps]
        lines.append("dry run: nothing written")
        emit({"dry_run": True, "written": [], **plan.as_dict()}, as_json, "\n".join(lines))
        return
    execute_conf_apply(ws, plan)
    written = [f"conf/{e.file}" for e in plan.edits]
    if written:
        lines.append(f"wrote {', '.join(written)}: conf/ now composes to params.yaml exactly")
    if plan.compose_stage:
        lines.append(f"recorded conf/ for stage {plan.compose_stage} in dvc.lock (dvc commit {plan.compose_stage}); "
                     "params.yaml unchanged, nothing to re-run")
    lines.append("next: git add conf dvc.lock && git commit, then tether release")
    emit({"dry_run": False, "written": written, **plan.as_dict()}, as_json, "\n".join(lines))


@app.command("list")
def list_(
    old_model: Optional[str] = MODEL_POSITIONAL,
    model: Optional[str] = MODEL_ALL,
    as_json: bool = JSON,
) -> None:
    """Releases, newest SemVer first, with stage, date and key metrics."""
    from tether.library import reads

    model = one_of(model, old_model, "--model", "the positional MODEL")
    ws = open_workspace()
    rows = [r.as_dict() for r in reads.releases(ws, model)]  # tether.api.releases' records
    typer.echo(list_output(rows, as_json, bool(rows) or bool(ws.models)))


@app.command()
def show(
    ref: str = typer.Argument(..., help="model@vX.Y.Z, model@latest, or an environment."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """The release manifest."""
    from tether.library import reads

    shown = reads.show(open_workspace(), ref, model)  # tether.api.show's record
    typer.echo(show_output({"tag": shown.tag, "stage": shown.stage, "manifest": shown.manifest, "note": shown.note},
                           as_json))


@app.command()
def diff(
    a: str = typer.Argument(..., help="REF"),
    b: str = typer.Argument(..., help="REF"),
    as_json: bool = JSON,
) -> None:
    """What changed between two releases, component by component."""
    from typing import cast

    from tether.core.manifest import ManifestDiff
    from tether.library import reads

    changed = reads.diff(open_workspace(), a, b)  # tether.api.diff's record
    typer.echo(diff_output(cast(ManifestDiff, changed.as_dict()), as_json))


@app.command()
def check(
    old_model: Optional[str] = MODEL_POSITIONAL,
    model: Optional[str] = MODEL_ALL,
    offline: bool = typer.Option(False, "--offline", help="Skip the DVC remote check."),
    since: Optional[str] = typer.Option(None, "--since", metavar="VERSION",
                                        help="Only releases at or above this version (e.g. v2.0.0): old history stays out of CI."),
    as_json: bool = JSON,
) -> None:
    """For CI: every release tag (however it was made) is complete, agrees with its commit, and is on the DVC remote."""
    from tether.registry.check import check_repository

    model = one_of(model, old_model, "--model", "the positional MODEL")
    report = check_repository(open_workspace(), model, offline=offline, since=since)
    typer.echo(check_output(report, since, as_json))
    if (err := report.error()) is not None:
        raise err


@app.command()
def status(old_model: Optional[str] = MODEL_POSITIONAL, model: Optional[str] = MODEL_ALL,
           as_json: bool = JSON) -> None:
    """Per model: latest release, what each environment runs, whether the workspace matches."""
    from tether.library import reads

    model = one_of(model, old_model, "--model", "the positional MODEL")
    typer.echo(status_output(reads.status(open_workspace(), model), as_json))  # tether.api.status' records
