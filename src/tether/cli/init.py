"""`tether init`: declare the pipeline's model in dvc.yaml (tether.commands.init)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from tether.cli.base import JSON, app, emit, open_workspace
from tether.errors import UsageError


@app.command()
def init(
    path: Optional[str] = typer.Option(None, "--path", help="The model's path (default: found in dvc.yaml's stages)."),
    name: Optional[str] = typer.Option(None, "--name", help="The model's name (default: from its path)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Take the proposal without asking."),
    as_json: bool = JSON,
) -> None:
    """Declare the pipeline's model in dvc.yaml; say what a release of it is made of and what is missing."""
    from tether.commands.init import apply_init, describe, plan_init, preview_release

    ws = open_workspace()
    tty = sys.stdin.isatty() and not as_json
    if path is None and tty and not yes and not ws.dvc_yaml.get("artifacts"):
        from tether.core.initscan import candidates

        if not candidates(ws.dvc_yaml):
            path = typer.prompt("no stage output looks like a model; the model's path") or None
    plan = plan_init(ws, path, name)
    describe(ws, plan)
    lines = _proposal_lines(plan)
    if plan.proposal and not yes:
        if not tty:
            emit(None, False, "\n".join(lines))
            raise UsageError("tether init asks before it writes dvc.yaml, and there is no terminal to ask on",
                             hint="pass --yes to take the proposal (nothing was written)")
        typer.echo("\n".join(lines))
        if not typer.confirm("write this into dvc.yaml?", default=True):
            raise typer.Abort()
        lines = []
    apply_init(ws, plan)
    preview_release(ws, plan)
    lines += _outcome_lines(plan)
    emit(plan.as_dict(), as_json, "\n".join(lines))


def _proposal_lines(plan) -> list[str]:
    lines = []
    if plan.proposal:
        lines.append("proposed for dvc.yaml:")
        lines += [f"  artifacts: {c.name}: path {c.path}, type model  ({c.found})" for c in plan.proposal]
    for model, facts in plan.facts.items():
        lines.append(f"{model}:")
        lines += [f"  {f}" for f in facts]
    return lines


def _outcome_lines(plan) -> list[str]:
    lines = []
    if plan.written:
        names = ", ".join(c.name for c in plan.proposal)
        lines.append(f"wrote the artifacts entry for {names} into dvc.yaml (every other line unchanged)")
        lines.append(f"next: git add dvc.yaml && git commit -m 'declare model {names}', "
                     "then `tether release --dry-run` (or `tether init` again) shows the release it would make")
    else:
        lines.append(f"nothing to change: dvc.yaml declares {', '.join(sorted(plan.declared))}")
        if plan.dirty:
            lines.append("next: commit dvc.yaml (git add dvc.yaml && git commit), "
                         "then `tether release --dry-run` shows the release it would make")
    for model, r in plan.release.items():
        if r["ok"]:
            lines.append(f"tether release --dry-run: would release {r['tag']} ({r['bump'] or 'explicit'}: "
                         f"{', '.join(r['reasons'])})")
        else:
            lines.append(f"tether release --dry-run for {model}: would not release: {r['error']}")
            if r.get("hint"):
                lines.append(f"  hint: {r['hint']}")
        lines += [f"  gate {g['gate']}: {g['status']} - {g['message']}" for g in r["gates"]]
    return lines
