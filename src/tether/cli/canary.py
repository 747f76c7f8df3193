"""`tether canary weight` and `tether guard`: canary rollouts and guarded rollback."""

from __future__ import annotations

from typing import Optional

import typer

from tether.cli.base import APPROVER, DRY, JSON, MODEL_OPT, approver_of, global_options, open_workspace, app, emit, progress
from tether.errors import GateFailed

canary_app = typer.Typer(help="Canary environments: the traffic weight as a recorded move.", no_args_is_help=True)
app.add_typer(canary_app, name="canary")


@canary_app.command("weight")
def weight(
    percent: str = typer.Argument(..., help="The canary's share of the traffic, 0 to 100."),
    env: str = typer.Option(..., "--env", help="The canary environment."),
    approver: Optional[str] = APPROVER,
    reason: str = typer.Option(..., "--reason", help="Why (recorded)."),
    model: Optional[str] = MODEL_OPT,
    dry_run: bool = DRY,
    as_json: bool = JSON,
) -> None:
    """Record a new traffic weight for the canary's release (a commit on its branch whose tree
    is still the release's; compare-and-swap like every move). Deploy it to make it live."""
    from tether.canary.weight import execute_weight, plan_weight
    from tether.core.moves import parse_weight

    ws = open_workspace()
    plan = plan_weight(ws, model, env, parse_weight(percent), approver=approver_of(ws, approver), reason=reason)
    if dry_run:
        emit({"dry_run": True, **plan.as_dict()}, as_json,
             f"would set {env}: {plan.release.tag} {plan.previous_weight}% → {plan.weight}%")
        return
    new = execute_weight(ws, plan)
    emit({"commit": new, **plan.as_dict()}, as_json,
         f"{env}: {plan.release.tag} {plan.previous_weight}% → {plan.weight}% (weight, commit {new[:12]})")


def _line(out) -> str:
    d = out.decision
    text = f"{d.action}: {d.evidence}"
    if out.moved:
        text += f"\n  moved {out.moved} (commit {out.commit[:12]})"
    for line in out.deployed:
        text += f"\n  deployed {line}"
    if out.live_note:
        text += f"\n  {out.live_note}"
    return text


@app.command("guard")
def guard_cmd(
    env: str = typer.Option(..., "--env", help="A canary environment, or one environment to guard alone."),
    url: str = typer.Option(..., "--url", help="The server, e.g. http://127.0.0.1:8000 (its /metrics)."),
    once: bool = typer.Option(False, "--once", help="One step and exit (cron, CI)."),
    interval: Optional[float] = typer.Option(None, "--interval", help="Seconds between steps (default: policy)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps."),
    deploy_to: Optional[str] = typer.Option(None, "--deploy", help="Deploy --env here after each move."),
    deploy_stable: Optional[str] = typer.Option(None, "--deploy-stable",
                                                help="Deploy the stable environment here after a promotion."),
    model: Optional[str] = MODEL_OPT,
    as_json: bool = JSON,
) -> None:
    """Watch a server's metrics for a canary and its stable environment (or one environment),
    step by step: hold, advance the weight, roll back on a breach with the evidence, promote
    after the last step. Exit 5 when a breach needs a human (policy rollback: manual)."""
    from tether.servedir.layout import resolve_target
    from tether.canary.guardrun import Guard

    cwd = global_options().chdir
    g = Guard(open_workspace(), model, env, url, deploy_to=resolve_target(deploy_to, cwd) if deploy_to else None,
              deploy_stable=resolve_target(deploy_stable, cwd) if deploy_stable else None)

    def report(out) -> None:
        if not as_json and not once:
            progress(_line(out))

    out = g.step() if once else g.run(interval, max_steps, report)
    d = out.decision
    data = {"env": out.env, "release": out.release, "action": d.action, "weight": d.weight, "why": d.why,
            "checks": [c.__dict__ for c in d.checks], "commit": out.commit, "moved": out.moved,
            "deployed": out.deployed, "live": out.live, "live_note": out.live_note}
    if d.action == "wait" and d.breached:
        emit(data, as_json, None)
        raise GateFailed(f"guard: {d.evidence}", hint=f"roll back by hand: tether rollback --env {env} … "
                         "(or set meta.tether.guard.rollback: auto)")
    emit(data, as_json, _line(out))
