"""`tether reproduce` and `tether report`: prove a release can be rebuilt bit for bit, and see the
registry at a glance in one static HTML file. Registered on tether.cli.base.app."""

from __future__ import annotations

from typing import Optional

import typer

from tether.cli.base import JSON, MODEL_OPT, open_workspace, app, emit, progress
from tether.errors import IntegrityError

_STATE = {"identical": "bit-identical", "differs": "DIFFERS", "not-recorded": "not recorded"}


def _reproduce_text(res) -> str:
    lines = [f"reproduced {res.release} from commit {res.commit[:12]} in a temporary clone "
             f"({len(res.stages)} stage(s) run, {res.seconds:.0f} s)",
             f"  {'inputs':12} {', '.join(res.inputs) if res.inputs else 'none to fetch (every data file is produced by a stage)'}"]
    for part, v in res.verdict.parts.items():
        line = f"  {part:12} {_STATE[v.state]}"
        if v.state == "differs":
            line += ": " + ", ".join(v.files[:8]) + (" …" if len(v.files) > 8 else "")
        elif v.detail:
            line += f" ({v.detail})"
        lines.append(line)
    rt = res.recorded_runtime
    if res.verdict.runtime:
        lines.append(f"  {'runtime':12} differs from the recorded one:")
        lines += [f"    {d}" for d in res.verdict.runtime]
    elif rt.get("python") or rt.get("packages"):
        lines.append(f"  {'runtime':12} same as recorded (python {rt.get('python', '?')}, "
                     f"{len(rt.get('packages') or {})} package(s))")
    else:
        lines.append(f"  {'runtime':12} the release recorded none")
    lines.append("bit-identical: every output matches the release manifest" if res.identical
                 else f"not reproduced: {', '.join(res.verdict.differing())} differ")
    return "\n".join(lines)


@app.command()
def reproduce(
    ref: str = typer.Argument(..., help="model@vX.Y.Z, model@latest, or an environment."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """Rebuild a release from scratch in a temporary clone and compare every output bit for bit."""
    from tether.commands.reproduce import reproduce as do_reproduce

    res = do_reproduce(open_workspace(), ref, model, progress=None if as_json else progress)
    emit(res.as_dict(), as_json, _reproduce_text(res))
    if not res.identical:
        hint = ("the runtime differs from the recorded one (" + "; ".join(res.verdict.runtime[:3]) + "), which "
                "explains most mismatches" if res.verdict.runtime else
                "no runtime difference explains it: a stage is not deterministic (an unseeded random source, a "
                "timestamp, thread order)")
        raise IntegrityError(f"{res.release} does not reproduce bit for bit: "
                             f"{', '.join(res.verdict.differing())} differ", hint=hint)


@app.command()
def report(
    output: Optional[str] = typer.Option(
        None, "--output", "-o",
        help="The HTML file to write (default: .git/tether/report.html, outside the work tree)."),
    model: Optional[str] = MODEL_OPT,
    title: Optional[str] = typer.Option(None, "--title", help="The page title (default: the repository's name)."),
    as_json: bool = JSON,
) -> None:
    """One static HTML file: per model, each environment's timeline, the releases, their five
    parts and notes, each metric across releases, and what changed between consecutive releases.
    Written outside the work tree unless -o says where, so the next release is not refused."""
    from pathlib import Path

    from tether.cli.base import global_options
    from tether.commands.report import write_report

    path = None
    if output is not None:
        path = Path(output)
        if not path.is_absolute():  # like every path argument: relative to -C
            path = Path(global_options().chdir) / path
    res = write_report(open_workspace(), path, model, title)
    if res.dirties_tree:
        progress(f"warning: {res.path} is inside the work tree and git does not ignore it: the next "
                 "`tether release` refuses the dirty tree (add it to .gitignore, or leave out -o to write "
                 "under .git/tether/)")
    where = " (inside the work tree, ignored by git)" if res.in_work_tree and res.ignored else ""
    emit(res.as_dict(), as_json, f"wrote {res.path}{where} ({res.models} model(s), {res.releases} release(s), "
                                 f"{res.events} environment move(s))\nopen {res.url} in any browser")


export_app = typer.Typer(help="Mirror releases and environments into other tools.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("mlflow")
def export_mlflow(
    refs: Optional[list[str]] = typer.Argument(None, help="Releases to export (default: every release)."),
    tracking_uri: str = typer.Option(..., "--tracking-uri", help="MLflow tracking/registry URI, e.g. sqlite:///mlflow.db."),
    artifact_location: Optional[str] = typer.Option(
        None, "--artifact-location",
        help="Where the export's experiment keeps the logged models, when it creates the experiment "
             "(default: beside a sqlite database, e.g. mlflow-artifacts/; a server's own default)."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """Each release as a version of an MLflow registered model of the same name, carrying a loadable
    pyfunc model (the release's verified files) and tagged with every part of the tuple; environments
    as aliases, every move as a tag. Idempotent. Needs tether[mlflow]. See docs/mlflow.md."""
    from tether.commands.export_mlflow import export

    res = export(open_workspace(), list(refs or []), tracking_uri, model, artifact_location)
    lines = [f"exported to {tracking_uri}: {len(res.created)} new version(s), {len(res.existing)} already there"]
    lines += [f"  new      {t}" for t in res.created]
    for key, version in sorted(res.aliases.items()):
        state = "moved" if key in res.moved else "same"
        lines.append(f"  alias    {key} → {'version ' + version if version else '(none)'} ({state})")
    lines.append(f"  history  {res.history_tags} move(s) recorded" if res.history_tags else "  history  up to date")
    if res.without_model:
        lines.append(f"  note     {len(res.without_model)} version(s) exported by an older tether carry no model "
                     f"({', '.join(res.without_model)}): delete them in MLflow and export again to make them loadable")
    if not res.changed:
        lines.append("nothing changed")
    emit(res.as_dict(), as_json, "\n".join(lines))
