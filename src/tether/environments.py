"""`tether promote` and `tether rollback`: gates, then a compare-and-swap move of the
environment branch to a new commit whose tree IS the release's tree."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tether import gates, history
from tether.check import INCOMPLETE, MISSING, MOVED, check_releases
from tether.dvcstore import DvcStore
from tether.errors import Conflict, GateFailed, IntegrityError, StorageError, UsageError
from tether.refs import RefArg, parse_ref
from tether.registry import Event, Registry, Release
from tether.release import now_iso
from tether.workspace import Workspace


@dataclass
class MovePlan:
    model: str
    env: str
    branch: str
    action: str
    release: Release
    old_head: str | None
    current: Event | None
    approver: str
    reason: str
    push: bool
    notes: dict = field(default_factory=dict)  # extra trailers (allowed regression, skipped staging)
    gates: list[gates.GateResult] = field(default_factory=list)

    def trailers(self, time: str) -> dict[str, str]:
        return {
            "Tether-Action": self.action,
            "Tether-Release": self.release.tag,
            "Tether-Tag-Object": self.release.tag_object,
            "Tether-Previous": self.current.release if self.current else "none",
            "Tether-Approver": self.approver,
            "Tether-Reason": self.reason,
            **self.notes,
            "Tether-Time": time,
        }

    def as_dict(self) -> dict:
        return {
            "action": self.action,
            "model": self.model,
            "env": self.env,
            "branch": self.branch,
            "release": self.release.tag,
            "from": self.current.release if self.current else None,
            "old_head": self.old_head,
            "approver": self.approver,
            "reason": self.reason,
            "push": self.push,
            "notes": self.notes,
            "gates": [g.as_dict() for g in self.gates],
        }


def _one_line(text: str | None, what: str) -> str:
    value = " ".join((text or "").split())
    if not value:
        raise UsageError(f"{what} is empty", hint=f"say {what.split()[0]} with --{what.split()[0]} \"…\"")
    return value


def _sync_with_remote(ws: Workspace, branch: str) -> None:
    """With --push, start from the remote's view: fast-forward our branch if the remote is
    ahead (lossless), refuse if the two diverged."""
    if not ws.git.remote_url("origin"):
        raise UsageError("--push needs a git remote named origin")
    if not ws.git.fetch_optional("origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}"):
        return
    remote = ws.git.ref(f"refs/remotes/origin/{branch}")
    local = ws.git.ref(f"refs/heads/{branch}")
    if remote is None or remote == local:
        return
    if local is None or ws.git.is_ancestor(local, remote):
        ws.git.update_ref(f"refs/heads/{branch}", remote, local, f"tether: sync {branch} with origin")
    elif not ws.git.is_ancestor(remote, local):
        raise Conflict(f"{branch} has diverged from origin/{branch}",
                       hint=f"inspect both histories: git log --first-parent {branch} origin/{branch}")


def _release_gates(reg: Registry, rel: Release, store: DvcStore) -> list[gates.GateResult]:
    report = check_releases(reg, [rel], store)
    out = []
    for f in report.findings:
        err = {MOVED: IntegrityError, "mismatch": IntegrityError, MISSING: StorageError, INCOMPLETE: GateFailed}[f.kind]
        if f.tag == rel.tag or f.kind == MOVED:
            out.append(gates.GateResult("check", False, f"{f.tag}: {f.message}",
                                        "run `tether check` for details", err))
    return out or [gates.passed("check", f"{rel.tag} is complete, matches its tree, and is on the remote")]


def smoke_gate(ws: Workspace, rel: Release, store: DvcStore) -> gates.GateResult:
    """Load the bundle from an isolated checkout of the release, predict the frozen eval
    slice, and match the recorded predictions digest and metrics."""
    from tether import smoke

    with tempfile.TemporaryDirectory(prefix="tether-smoke-") as tmp:
        try:
            msg = smoke.run_smoke(ws.git, store, rel.manifest, ws.settings(rel.name.model), Path(tmp) / "release")
        except (IntegrityError, StorageError) as exc:
            return gates.GateResult("smoke", False, exc.message, exc.hint, type(exc))
    return gates.passed("smoke", msg)


def plan_move(
    ws: Workspace,
    *,
    action: str,
    model: str | None,
    env: str,
    release_ref: str | None,
    approver: str,
    reason: str,
    push: bool = False,
    allow_regression: str | None = None,
    skip_staging: str | None = None,
    smoke: bool = True,
    store: DvcStore | None = None,
) -> MovePlan:
    approver = _one_line(approver, "approver")
    reason = _one_line(reason, "reason")
    ref: RefArg | None = parse_ref(release_ref) if release_ref else None
    model = ws.model(model or (ref.model if ref else None))
    branch = ws.branch(model, env)
    if ws.git.is_shallow():
        raise UsageError("this is a shallow clone: the environment's history is incomplete",
                         hint="fetch the full history first: git fetch --unshallow")
    if push:
        _sync_with_remote(ws, branch)
    reg = Registry(ws, messages=False)
    current = reg.live(model, env)
    reg.check_tag_integrity(reg.history(model, env))
    head = reg.env_head(model, env)
    if head is not None and current is None:
        raise Conflict(f"branch {branch} exists but was not made by tether",
                       hint=f"rename it (git branch -m {branch} {branch}-old) or set branch_template in dvc.yaml")

    if action == "rollback":
        if ref is None:
            target = history.rollback_target(reg.history(model, env))
            if target is None:
                raise Conflict(f"nothing to roll back to in {env}: no earlier good release in its history",
                               hint="name one with --to model@vX.Y.Z")
            rel = reg.by_tag(target)
            if rel is None:
                raise IntegrityError(f"{target}, earlier live in {env}, no longer exists as a tag")
        else:
            rel = reg.resolve(ref, model)
    else:
        if ref is None:
            raise UsageError("promote needs a REF")
        rel = reg.resolve(ref, model)
    if rel.name.model != model:
        raise UsageError(f"{rel.tag} is not a release of {model}")
    if current and current.release == rel.tag:
        raise Conflict(f"{env} already runs {rel.tag}", hint="nothing to do")

    store = store or DvcStore(ws.root)
    plan = MovePlan(model=model, env=env, branch=branch, action=action, release=rel,
                    old_head=head.commit if head else None, current=current,
                    approver=approver, reason=reason, push=push)
    results = _release_gates(reg, rel, store)
    gates.raise_failures(results, action)

    settings = ws.settings(model)
    envs = settings.environments
    if action == "promote":
        if current is not None and (cur := reg.by_tag(current.release)) and cur.manifest:
            reg_gate = gates.regression(cur.manifest.get("metrics") or {}, rel.manifest.get("metrics") or {},
                                        settings.tolerance, settings.lower_is_better, settings.gate_metrics)
            if not reg_gate.ok and allow_regression:
                plan.notes["Tether-Allow-Regression"] = _one_line(allow_regression, "allow-regression reason")
                reg_gate = gates.passed("regression", f"allowed: {reg_gate.message}")
            results.append(reg_gate)
        else:
            results.append(gates.passed("regression", f"{env} runs nothing yet"))
        idx = envs.index(env)
        if settings.require_staging and idx > 0:
            before = envs[idx - 1]
            was_there = any(ev.release == rel.tag for ev in reg.history(model, before))
            if was_there:
                results.append(gates.passed("staging-first", f"{rel.tag} was in {before}"))
            elif skip_staging:
                plan.notes["Tether-Skip-Staging"] = _one_line(skip_staging, "skip-staging reason")
                results.append(gates.passed("staging-first", f"skipped: {skip_staging}"))
            else:
                results.append(gates.GateResult("staging-first", False, f"{rel.tag} was never in {before}",
                                                f"promote it to {before} first, or pass --skip-staging REASON"))
    gates.raise_failures(results, action)
    if smoke and settings.smoke:
        results.append(smoke_gate(ws, rel, store))
    elif smoke:
        results.append(gates.passed("smoke", "disabled for this model in dvc.yaml (meta.tether.smoke: false)"))
    gates.raise_failures(results, action)
    plan.gates = results
    return plan


def commit_message(plan: MovePlan, time: str) -> str:
    verb = "promote" if plan.action == "promote" else "roll back"
    title = f"{verb} {plan.env} to {plan.release.tag}"
    body = "\n".join(f"{k}: {v}" for k, v in plan.trailers(time).items())
    return f"{title}\n\n{plan.reason}\n\n{body}\n"


def execute_move(ws: Workspace, plan: MovePlan) -> str:
    """Create the move commit and swap the branch to it; returns the new commit.
    With --push the remote moves first (fast-forward only): if someone else got there first the
    push is rejected and our local branch never moved."""
    rel = plan.release
    parents = ([plan.old_head] if plan.old_head else []) + [rel.commit]
    new = ws.git.commit_tree(rel.tree, parents, commit_message(plan, now_iso()))
    ref = f"refs/heads/{plan.branch}"
    if plan.push:
        ws.git.push("origin", f"{new}:{ref}")
    ws.git.update_ref(ref, new, plan.old_head, f"tether: {plan.action} {plan.env} to {rel.tag}")
    return new


def move_history(ws: Workspace, model: str | None, env: str | None, at: str | None) -> dict:
    model = ws.model(model)
    reg = Registry(ws, messages=False)
    envs = [env] if env else list(ws.settings(model).environments)
    out = {"model": model, "environments": {}}
    for e in envs:
        ws.branch(model, e)  # validates the name
        events = reg.history(model, e)
        reg.check_tag_integrity(events)
        entry: dict = {"branch": ws.branch(model, e), "events": [ev.__dict__ for ev in events]}
        if at:
            live = history.live_at(events, history.parse_time(at))
            entry["live_at"] = {"at": at, "release": live.release if live else None,
                                "commit": live.commit if live else None}
        out["environments"][e] = entry
    return out

