"""The command line: the only place that prints or exits. Each command parses its arguments,
calls one module that does the work, and renders the result as text or `--json`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

try:  # typer 0.2x vendors click; its context is the one our commands run in
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - a typer that uses click itself
    from click import get_current_context  # type: ignore[no-redef]

from tether.errors import TetherError, UsageError
from tether.gates import NOT_METRICS

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Release, promote, deploy and roll back the whole model tuple "
    "(weights, data, code, params, threshold) as one unit, on Git + DVC.",
)


@dataclass(frozen=True)
class Options:
    """The global options, kept on typer's context (no module state)."""

    debug: bool = False
    chdir: str = "."


def _opts() -> Options:
    ctx = get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, Options) else Options()

JSON = typer.Option(False, "--json", help="Machine-readable output.")
DRY = typer.Option(False, "--dry-run", help="Print the plan; change nothing.")
MODEL_OPT = typer.Option(None, "--model", help="The model (optional when dvc.yaml declares one).")
SIGN = typer.Option(False, "--sign", help="Sign with your git signing configuration (gpg.format, user.signingkey).")
MODEL_ARG = typer.Argument(None, help="The model (optional when dvc.yaml declares one; all models if left out).")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"tether {version('tether')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    chdir: str = typer.Option(".", "-C", help="Run as if started in this directory."),
    _show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print tether's version and exit."),
) -> None:
    import os

    if not os.path.isdir(chdir):
        raise UsageError(f"-C {chdir}: no such directory")
    ctx.obj = Options(debug=debug, chdir=chdir)


def _ws():
    from tether.workspace import Workspace

    return Workspace.discover(_opts().chdir)


# C0 and C1 control characters and DEL, except newline and tab: text from git (an approver, a
# reason, a tag message, an author) is printed escaped, so it cannot move the cursor, recolour
# the terminal or forge a line of tether's own output.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


def safe(text: str) -> str:
    return text.translate(_CONTROL)


def emit(data, as_json: bool, text: str | None = None) -> None:
    if as_json:  # json.dumps escapes every control character itself
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif text is not None:
        typer.echo(safe(text))


def progress(msg: str) -> None:
    typer.echo(safe(msg), err=True)


def _metrics_line(metrics: dict | None, keys=("roc_auc", "f1", "precision", "recall")) -> str:
    if not metrics:
        return "-"
    shown = [k for k in keys if isinstance(metrics.get(k), (int, float))]
    if not shown:  # a project with its own metric names: the first few numeric ones
        shown = [k for k in sorted(metrics) if k not in NOT_METRICS and isinstance(metrics[k], (int, float))
                 and not isinstance(metrics[k], bool)][:4]
    return " ".join(f"{k}={metrics[k]:.3f}" for k in shown) or "-"


def _gate_line(g) -> str:
    line = f"  gate {g.name}: {g.status} - {g.message}"
    return line + (f"\n    ({g.hint})" if g.warning and g.hint else "")


# -- releases ------------------------------------------------------------------------------
@app.command()
def release(
    model: Optional[str] = typer.Argument(None, help="Model name (optional with one model)."),
    version: Optional[str] = typer.Option(None, "--version", help="Exact version X.Y.Z."),
    bump: Optional[str] = typer.Option(None, "--bump", help="major, minor or patch."),
    message: Optional[str] = typer.Option(None, "-m", "--message", help="Release note."),
    push: bool = typer.Option(False, "--push", help="Push DVC outputs, then the tag."),
    sign: bool = SIGN,
    dry_run: bool = DRY,
    as_json: bool = JSON,
) -> None:
    """Gate HEAD, then tag it <model>@vX.Y.Z with the manifest."""
    from tether.release import execute_release, plan_release

    ws = _ws()
    if not as_json:
        progress("checking gates: clean tree, dvc status, params vs conf/, completeness, remote …")
    plan = plan_release(ws, model, version=version, bump=bump, message=message, push=push, sign=sign)
    if dry_run:
        lines = [f"would release {plan.tag} ({plan.bump or 'explicit'}: {', '.join(plan.reasons)})"]
        lines += [_gate_line(g) for g in plan.gates]
        lines += [f"  step: {s}" for s in plan.steps]
        emit({"dry_run": True, **plan.as_dict()}, as_json, "\n".join(lines))
        return
    tag_obj = execute_release(ws, plan)
    emit({"dry_run": False, "tag_object": tag_obj, **plan.as_dict()}, as_json,
         f"released {plan.tag} at {plan.commit[:12]} ({plan.bump or 'explicit'}: {', '.join(plan.reasons)})"
         + ("\npushed DVC outputs and the tag" if push else ""))


# -- conf/ ---------------------------------------------------------------------------------
conf_app = typer.Typer(no_args_is_help=True, help="Hydra conf/ and params.yaml.")
app.add_typer(conf_app, name="conf")


def _override_lines(overrides) -> list[str]:
    width = max((len(o.text) for o in overrides), default=0)
    return [f"  {o.text:{width}}  {o.where}" for o in overrides]


@conf_app.command("apply")
def conf_apply(dry_run: bool = DRY, as_json: bool = JSON) -> None:
    """Write the overrides that explain params.yaml (e.g. from `dvc exp run -S`) into conf/."""
    from tether.confapply import execute_conf_apply, plan_conf_apply

    ws = _ws()
    plan = plan_conf_apply(ws)
    if plan.nothing_to_do:
        emit({"dry_run": dry_run, "written": [], **plan.as_dict()}, as_json,
             "nothing to apply: params.yaml equals the composition of conf/")
        return
    overrides = plan.explanation.overrides
    lines = [f"params.yaml is conf/ composed with {len(overrides)} override(s):", *_override_lines(overrides)]
    if dry_run:
        lines += [e.diff().rstrip("\n") for e in plan.edits]
        lines += [f"  step: {s}" for s in plan.steps]
        lines.append("dry run: nothing written")
        emit({"dry_run": True, "written": [], **plan.as_dict()}, as_json, "\n".join(lines))
        return
    execute_conf_apply(ws, plan)
    written = [f"conf/{e.file}" for e in plan.edits]
    lines.append(f"wrote {', '.join(written)}: conf/ now composes to params.yaml exactly")
    if plan.compose_stage:
        lines.append(f"recorded conf/ for stage {plan.compose_stage} in dvc.lock (dvc commit {plan.compose_stage}); "
                     "params.yaml unchanged, nothing to re-run")
    lines.append("next: git add conf dvc.lock && git commit, then tether release")
    emit({"dry_run": False, "written": written, **plan.as_dict()}, as_json, "\n".join(lines))


@app.command("list")
def list_(
    model: Optional[str] = MODEL_ARG,
    as_json: bool = JSON,
) -> None:
    """Releases, newest SemVer first, with stage, date and key metrics."""
    from tether.views import release_rows

    rows = [r.as_dict() for r in release_rows(_ws(), model)]
    lines = [f"{'RELEASE':32} {'STAGE':19} {'DATE':25} METRICS"]
    for r in rows:
        metrics = _metrics_line(r["metrics"]) if r["complete"] else f"{r['kind'].upper()}: {r['problem']}"
        lines.append(f"{r['tag']:32} {r['stage']:19} {r['created_at'][:25]:25} {metrics}")
    if not rows:
        lines = ["no releases yet: make one with `tether release`"]
    emit(rows, as_json, "\n".join(lines))


def _resolve(reg, ref: str, model: Optional[str] = None):
    from tether.refs import parse_ref

    return reg.resolve(parse_ref(ref), model)


@app.command()
def show(
    ref: str = typer.Argument(..., help="model@vX.Y.Z, model@latest, or an environment."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """The release manifest."""
    from tether.manifest import dumps
    from tether.registry import Registry

    reg = Registry(_ws(), messages=False)
    rel = _resolve(reg, ref, model)
    rel.require_trusted("shown")
    if as_json:
        typer.echo(dumps(rel.manifest).rstrip())
        return
    m, c = rel.manifest, rel.manifest["components"]
    lines = [
        f"{rel.tag}  ({reg.stage(rel)})",
        f"  commit      {m['commit']}",
        f"  created     {m['created_at']} by {m['released_by']}",
        f"  threshold   {c['threshold'].get('value')}  ({c['threshold'].get('source')})",
        f"  metrics     {_metrics_line(m.get('metrics'))}",
        "  weights",
        *[f"    {e['path']}  sha256:{(e.get('sha256') or '')[:16]}  {e.get('size')} B" for e in c["weights"]],
        "  data",
        *[f"    {e['path']}  md5:{(e.get('md5') or '')[:16]}  {e.get('size')} B" for e in c["data"]],
        "  code",
        *[f"    {e['path']}  {e.get('type')}:{(e.get('git_id') or '')[:12]}" for e in c["code"]],
        f"  params      {c['params'].get('path')}  sha256:{(c['params'].get('sha256') or '')[:16]}",
        f"  runtime     python {m.get('runtime', {}).get('python', '?')}  lock:{m.get('runtime', {}).get('lock_sha256', '')[:16]}",
    ]
    typer.echo(safe("\n".join(lines)))


@app.command()
def diff(
    a: str = typer.Argument(..., help="REF"),
    b: str = typer.Argument(..., help="REF"),
    as_json: bool = JSON,
) -> None:
    """What changed between two releases, component by component."""
    from tether.manifest import diff as mdiff
    from tether.registry import Registry

    reg = Registry(_ws(), messages=False)
    ra, rb = _resolve(reg, a), _resolve(reg, b)
    for r in (ra, rb):
        r.require_trusted("compared")
    d = mdiff(ra.manifest, rb.manifest)
    lines = [f"{d['from']} → {d['to']}"]
    for name, comp in d["components"].items():
        state = "changed" if comp["changed"] else "same"
        lines.append(f"  {name:10} {state}")
        if name in ("weights", "data", "code"):
            for k in ("added", "removed", "modified"):
                lines += [f"    {k[0].upper()} {p}" for p in comp[k]]
        elif name == "params":
            lines += [f"    {k}: {v['from']!r} → {v['to']!r}" for k, v in comp["keys"].items()]
        elif name == "threshold" and comp["changed"]:
            lines.append(f"    {comp['from']} → {comp['to']}")
    lines.append(f"  {'schema':10} {'changed' if d['feature_schema_changed'] else 'same'}")
    lines.append("  metrics")
    lines += [f"    {k}: {v['from']} → {v['to']} ({v['delta']:+})" for k, v in d["metrics"].items()
              if v["delta"] is not None]
    emit(d, as_json, "\n".join(lines))


@app.command()
def check(
    model: Optional[str] = MODEL_ARG,
    offline: bool = typer.Option(False, "--offline", help="Skip the DVC remote check."),
    since: Optional[str] = typer.Option(None, "--since", metavar="VERSION",
                                        help="Only releases at or above this version (e.g. v2.0.0): old history stays out of CI."),
    as_json: bool = JSON,
) -> None:
    """For CI: every release tag (however it was made) is complete, agrees with its commit, and is on the DVC remote."""
    from tether.check import check_releases
    from tether.dvcstore import DvcStore
    from tether.registry import Registry

    ws = _ws()
    reg = Registry(ws)
    models = [ws.model(model)] if model else sorted(ws.models)
    rels = [r for m in models for r in reg.of(m)]
    skipped = []
    if since:
        from tether.semver import Version

        floor = Version.parse(since.rpartition("@v")[2] if "@v" in since else since)
        skipped = [r.tag for r in rels if r.version < floor]
        rels = [r for r in rels if not r.version < floor]
    report = check_releases(reg, rels, None if offline else DvcStore(ws.root), signatures=True)
    report.skipped = skipped
    lines = [f"checked {len(report.checked)} release(s)"
             + (f"; skipped {len(skipped)} older than {since}: {', '.join(skipped[:5])}"
                + (" …" if len(skipped) > 5 else "") if skipped else "")]
    lines += [f"  {f.tag}: {f.kind}: {f.message}" for f in report.findings]
    emit(report.as_dict(), as_json, "\n".join(lines) if not report.ok or as_json else lines[0] + ": all complete, matching, on the remote")
    if (err := report.error()) is not None:
        raise err


@app.command()
def status(model: Optional[str] = MODEL_ARG, as_json: bool = JSON) -> None:
    """Per model: latest release, what each environment runs, whether the workspace matches."""
    from tether.views import model_status

    models = model_status(_ws(), model)
    lines = []
    for st in models:
        lines.append(st.model)
        lines.append(f"  latest     {st.latest or '(no releases)'}")
        for env, view in st.environments.items():
            shown = view.release or (f"{view.outside_commit[:12]} committed outside tether, matches no release"
                                     if view.outside_commit else "(empty)")
            lines.append(f"  {env:10} {shown}{_ref_note(view.state.as_dict())}")
        matches = ", ".join(st.matches) if st.matches else "no release"
        lines.append(f"  workspace  {st.head[:12]}{' (dirty)' if st.dirty else ''} matches {matches}")
    emit([st.as_dict() for st in models], as_json, "\n".join(lines))


def _ref_note(st: dict) -> str:
    """Which ref a command used for an environment, and how local and origin's differ."""
    rel, b = st["relation"], st["branch"]
    if rel in ("absent", "same", "local-only"):
        return ""
    if rel == "remote-only":
        return f"  (from origin/{b}; no local branch)"
    if rel == "behind":
        return f"  (from origin/{b}; local {b} is behind)"
    if rel == "ahead":
        return f"  (from local {b}; ahead of origin/{b}: not pushed)"
    return f"  (local {b} and origin/{b} have DIVERGED; showing local)"


# -- environments --------------------------------------------------------------------------
def _move(action: str, **kw) -> None:
    from tether.environments import execute_move, plan_move

    as_json, dry_run = kw.pop("as_json"), kw.pop("dry_run")
    ws = _ws()
    if not as_json:
        progress(f"checking gates for {action}: check, " + ("regression, staging-first, " if action == "promote" else "")
                 + "smoke test …")
    plan = plan_move(ws, action=action, read_only=dry_run, **kw)
    frm = ((plan.current.release or f"{plan.current.commit[:12]} (no release)") if plan.current else "(empty)")
    gate_lines = [_gate_line(g) for g in plan.gates]
    if dry_run:
        emit({"dry_run": True, **plan.as_dict()}, as_json,
             "\n".join([f"would {action} {plan.env}: {frm} → {plan.release.tag}", *gate_lines]))
        return
    new = execute_move(ws, plan)
    for step in plan.published:
        progress(step)
    emit({"dry_run": False, "commit": new, **plan.as_dict()}, as_json,
         "\n".join([*gate_lines, f"{plan.env}: {frm} → {plan.release.tag} ({action}, commit {new[:12]}"
                     + (", pushed" if plan.push else "") + ")"]))


@app.command()
def promote(
    ref: str = typer.Argument(..., help="model@vX.Y.Z, model@latest, or an environment to copy from."),
    to: str = typer.Option(..., "--to", help="Environment to move."),
    approver: str = typer.Option(..., "--approver", help="Who approves (recorded)."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
    model: Optional[str] = MODEL_OPT,
    push: bool = typer.Option(False, "--push", help="Fast-forward push to origin; a concurrent move is rejected."),
    allow_regression: Optional[str] = typer.Option(
        None, "--allow-regression", metavar="REASON", help="Promote despite a metric regression (reason recorded)."),
    skip_staging: Optional[str] = typer.Option(
        None, "--skip-staging", metavar="REASON", help="Promote to production without staging first (reason recorded)."),
    allow_incomplete: Optional[str] = typer.Option(None, "--allow-incomplete", metavar="REASON",
                                                   help="Promote a release missing one of the five parts (recorded)."),
    sign: bool = SIGN,
    dry_run: bool = DRY,
    as_json: bool = JSON,
) -> None:
    """Gate a release, then move an environment to it (compare-and-swap)."""
    _move("promote", model=model, env=to, release_ref=ref, approver=approver, reason=reason, push=push,
          allow_regression=allow_regression, skip_staging=skip_staging, allow_incomplete=allow_incomplete,
          sign=sign, dry_run=dry_run, as_json=as_json)


@app.command()
def rollback(
    env: str = typer.Option("production", "--env", help="Environment to move back."),
    to: Optional[str] = typer.Option(None, "--to", help="A release; default: the last known good one."),
    approver: str = typer.Option(..., "--approver", help="Who approves (recorded)."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
    model: Optional[str] = MODEL_OPT,
    push: bool = typer.Option(False, "--push", help="Push the environment branch (compare-and-swap on origin)."),
    sign: bool = SIGN,
    dry_run: bool = DRY,
    as_json: bool = JSON,
) -> None:
    """Move an environment back to the last known good release, or to --to REF."""
    _move("rollback", model=model, env=env, release_ref=to, approver=approver, reason=reason, push=push,
          sign=sign, dry_run=dry_run, as_json=as_json)


@app.command()
def history(
    env: Optional[str] = typer.Option(None, "--env", help="One environment (default: every environment)."),
    at: Optional[str] = typer.Option(None, "--at", help="ISO-8601: which release was live then."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """The audit trail of each environment, newest first."""
    from tether.environments import move_history

    data = move_history(_ws(), model, env, at)
    lines = []
    for e, entry in data["environments"].items():
        lines.append(f"{e} (branch {entry['branch']}){_ref_note(entry['ref'])}")
        if "live_at" in entry:
            lines.append(f"  live at {entry['live_at']['at']}: {entry['live_at']['release'] or '(nothing)'}")
            continue
        if not entry["events"]:
            lines.append("  (no moves yet)")
        for ev in entry["events"]:
            if ev["source"] == "outside":
                what = ev["release"] or "matches no release"
                lines.append(f"  {ev['time'][:26]:26} outside  {ev['previous']} → {what}"
                             f"  commit {ev['commit'][:12]} by {ev['approver']}: {ev['reason']}"
                             + _signer_note(ev.get("signature")))
                continue
            lines.append(f"  {ev['time'][:26]:26} {ev['action']:8} {ev['previous']} → {ev['release']}"
                         f"  by {ev['approver']}: {ev['reason']}" + ("  (gto tag)" if ev["source"] == "gto" else "")
                         + _signer_note(ev.get("signature")))
    emit(data, as_json, "\n".join(lines))
    if data.get("refused"):
        from tether.errors import IntegrityError

        raise IntegrityError(data["refused"], hint="see the moves marked REFUSED above")


def _signer_note(sig: Optional[dict]) -> str:
    """Beside each move: the signer git verified, or why the policy refuses it."""
    if not sig:
        return ""
    if sig["problem"] and sig["enforced"]:
        return f"  [REFUSED: {sig['problem']}]"
    if sig["verified"]:
        return f"  [signed: {sig['principal']}]"
    return "  [unsigned]" if sig["status"] == "N" else f"  [signature {sig['status']}: not verified]"


@app.command()
def gc(
    keep: int = typer.Option(3, "--keep", help="Newest releases per model to keep besides every one ever live."),
    cloud: bool = typer.Option(False, "--cloud", help="Also delete from the DVC remote."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
) -> None:
    """Garbage-collect DVC objects no protected release or the workspace needs."""
    from tether.gc import execute_gc, plan_gc

    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    ws = _ws()
    plan = plan_gc(ws, newest=keep, cloud=cloud)
    text = (("read origin's environments and tags first\n" if plan.fetched else "")
            + f"protected: {', '.join(plan.protected) or '(none)'} ({len(plan.protected_commits)} commit(s))\n"
            f"{'would delete' if dry_run else 'deleted'} {len(plan.cache_delete)} cache object(s)"
            + (f" and {len(plan.remote_delete)} remote object(s)" if cloud else ""))
    for tag, md5s in sorted(plan.by_release.items()):
        text += f"\n  {tag}: {len(md5s)} object(s)"
    if not dry_run:
        execute_gc(ws, plan)
    emit({"dry_run": dry_run, **plan.as_dict()}, as_json, text)


# -- serving hosts and workspaces ----------------------------------------------------------
@app.command()
def deploy(
    env: str = typer.Option(..., "--env", help="Environment whose release to serve."),
    target: str = typer.Option(..., "--target", help="Serving directory."),
    repo: Optional[str] = typer.Option(None, "--repo", help="Git URL to deploy from (default: this repo)."),
    model: Optional[str] = MODEL_OPT,
    keep: int = typer.Option(3, "--keep", help="Materialised releases to keep."),
    full: bool = typer.Option(False, "--full", help="Materialise every DVC output, data too."),
    smoke: bool = typer.Option(False, "--smoke", help="Run the smoke test before switching."),
    require_signed: bool = typer.Option(False, "--require-signed",
                                        help="Deploy only a move signed by a key in --allowed-signers."),
    allowed_signers: Optional[str] = typer.Option(None, "--allowed-signers", metavar="FILE",
                                                  help="This host's allowed signers file (git's SSH format)."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
) -> None:
    """Converge DIR to the environment's release, atomically."""
    from tether.deploy import deploy as do_deploy
    from tether.deploy import resolve_target

    resolve_target(target, _opts().chdir)  # an empty --target is a usage error, before anything else
    if repo is None:
        _ws()  # fail early outside a repository
    # -C names the repository, and (as in git) what a relative DIR or --repo path is relative to
    res = do_deploy(target, env, repo_url=repo, model=model, keep=keep, full=full, smoke=smoke,
                    dry_run=dry_run, progress=None if as_json else progress, cwd=_opts().chdir,
                    require_signatures=require_signed, allowed_signers=allowed_signers)
    if dry_run:
        emit({"dry_run": True, **res.as_dict()}, as_json,
             f"{env}: {res.outcome.replace('would-', 'would ')} {res.release} in {target} (live: {res.previous or 'nothing'})")
        return
    text = {"noop": f"{env}: {res.release} is already live in {target}",
            "switched": f"{env}: switched {target}/current {res.previous} → {res.release} (already materialised)",
            "deployed": f"{env}: deployed {res.release} to {target} (was {res.previous or 'empty'})"}[res.outcome]
    if res.pruned:
        text += f"\npruned: {', '.join(res.pruned)}"
    emit(res.as_dict(), as_json, text)


@app.command()
def verify(
    ref: Optional[str] = typer.Argument(None, help="A release to verify from the cache or remote."),
    target: Optional[str] = typer.Option(None, "--target", help="Verify DIR/current instead."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """Recompute every digest against the manifest."""
    if (ref is None) == (target is None):
        raise UsageError("give a REF or --target DIR (one of them)")
    if target is not None:  # `--target ""` is refused, not taken for "no target"
        from tether.deploy import verify_target

        res = verify_target(target, cwd=_opts().chdir)
    elif ref is not None:
        from tether.checkout import verify_release

        res = verify_release(_ws(), ref, model, progress=None if as_json else progress)
    emit(res, as_json, f"{res['release']}: {res['files']} file(s), every digest matches")


@app.command()
def checkout(
    ref: str = typer.Argument(..., help="model@vX.Y.Z, model@latest or an environment."),
    model: Optional[str] = MODEL_OPT,
    force: bool = typer.Option(False, "--force", help="Discard uncommitted work."),
    dry_run: bool = DRY,
    as_json: bool = JSON,
) -> None:
    """Safe `git checkout` + `dvc pull`: all of the release, or nothing changes."""
    from tether.checkout import checkout as do_checkout

    res = do_checkout(_ws(), ref, model=model, force=force, dry_run=dry_run, progress=None if as_json else progress)
    if dry_run:
        emit({"dry_run": True, **res.as_dict()}, as_json,
             f"would check out {res.release} ({res.ref}) with {len(res.outputs)} output(s); nothing changed")
        return
    emit(res.as_dict(), as_json, f"checked out {res.release} ({res.ref}); {len(res.outputs)} output(s) in place")


@app.command()
def serve(
    target: str = typer.Option(..., "--target", help="Serving directory (see deploy)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    watch_interval: float = typer.Option(1.0, "--watch-interval", help="Seconds between checks of current."),
    max_body: int = typer.Option(1 << 20, "--max-body-bytes", help="Largest /predict body accepted (413 above)."),
) -> None:
    """HTTP service over DIR/current, one worker process per release: POST /predict, GET /ready,
    /version, /metrics."""
    from tether.deploy import resolve_target
    from tether.serve import run

    if max_body < 1:
        raise UsageError("--max-body-bytes must be at least 1")
    run(resolve_target(target, _opts().chdir), host, port, watch_interval, max_body)


@app.command("worker", hidden=True)
def worker(
    target: str = typer.Option(..., "--target", help="The serving directory."),
    release: Optional[str] = typer.Option(None, "--release", help="Without it: a spare, told later."),
    smoke_eval: Optional[str] = typer.Option(None, "--smoke-eval", help="Run the smoke test on this eval slice."),
    once: bool = typer.Option(False, "--once", help="Stop after the ready line (the promote smoke gate)."),
) -> None:
    """One release's worker process, started by `tether serve` (protocol: tether.worker)."""
    from tether.worker import run as run_worker

    code = run_worker(Path(target), Path(release) if release else None, smoke_eval, once)
    if code:
        sys.exit(code)


import tether.cli_hook  # noqa: E402,F401  (registers `tether hook`)


def _debug_requested() -> bool:
    # The context is gone once the command has raised: read the flag from the command line.
    return "--debug" in sys.argv[1:]


def main() -> None:
    try:
        app(standalone_mode=False)
    except TetherError as exc:
        if _debug_requested():
            raise
        typer.echo(safe(f"error: {exc.message}"), err=True)
        if exc.hint:
            typer.echo(safe(f"hint: {exc.hint}"), err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's usage errors and anything unexpected
        # typer may vendor click, so recognise click's exceptions by shape, not by class.
        code = getattr(exc, "exit_code", None)
        if hasattr(exc, "show") and isinstance(code, int):
            exc.show()
            sys.exit(code)
        if type(exc).__name__ == "Exit" and isinstance(code, int):
            sys.exit(code)
        if _debug_requested():
            raise
        typer.echo(safe(f"error: {type(exc).__name__}: {exc}"), err=True)
        typer.echo("hint: run again with --debug for the traceback", err=True)
        sys.exit(1)


if __name__ == "__main__":
    # `python -m tether.cli`: run the importable module's app, the one cli_<topic> modules register on
    from tether.cli import main as _module_main

    _module_main()
