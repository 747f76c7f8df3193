"""`tether promote` and `tether rollback`: gates, then a compare-and-swap move of the
environment branch to a new commit whose tree IS the release's tree."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tether.core import gates
from tether.core import history
from tether.registry import signing
from tether.core import signpolicy
from tether.registry.check import FINDING_ERRORS, INCOMPLETE, MISSING, MOVED, check_releases
from tether.clock import now_iso
from tether.adapters.dvcstore import DvcStore
from tether.errors import Conflict, GateFailed, IntegrityError, StorageError, UsageError
from tether.core.refs import RefArg, parse_ref
from tether.core.moves import Event
from tether.registry.registry import Registry
from tether.registry.release import Release
from tether.adapters.workspace import Settings, Workspace


@dataclass
class MovePlan:
    model: str
    env: str
    branch: str
    action: str
    release: Release
    old_head: str | None  # the environment's head as used (local, or origin's when ours lags)
    local_head: str | None  # what the local branch points at now: the compare-and-swap's "old"
    current: Event | None
    approver: str
    reason: str
    push: bool
    notes: dict = field(default_factory=dict)  # extra trailers (allowed regression, skipped staging)
    published: list = field(default_factory=list)  # what --push had to publish first
    wanted: dict = field(default_factory=dict)  # {md5: path} --push made sure the remote holds
    gates: list[gates.GateResult] = field(default_factory=list)
    sign: bool = False  # a signed move commit (git's own signing: `commit-tree -S`)
    signature_rule: signpolicy.Rule = field(default_factory=signpolicy.Rule)
    # without --push, with an origin: {"branch", "origin_release", "push"}: hosts deploying from
    # origin do not see this move until it is pushed (and `tether deploy` here refuses until then)
    local_only: dict | None = None

    def trailers(self, time: str) -> dict[str, str]:
        return {
            "Tether-Action": self.action,
            "Tether-Release": self.release.tag,
            "Tether-Tag-Object": self.release.tag_object,
            "Tether-Previous": (self.current.release or "none") if self.current else "none",
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
            "sign": self.sign,
            "notes": self.notes,
            "gates": [g.as_dict() for g in self.gates],
            "local_only": self.local_only,
        }


def _one_line(text: str | None, what: str) -> str:
    value = " ".join((text or "").split())
    if not value:
        raise UsageError(f"{what} is empty", hint=f"say {what.split()[0]} with --{what.split()[0]} \"…\"")
    return value


def _sync_with_remote(ws: Workspace, branch: str, model: str) -> None:
    """With --push, start from the remote's view: fast-forward our branch if the remote is
    ahead (lossless), refuse if the two diverged. The model's GTO assignment tags come too: the
    next one is numbered from them, and a tag origin holds that we lack (a `promote --push`
    killed after its push) would make every later push collide with it."""
    from tether.core import gto

    if not ws.git.remote_url("origin"):
        raise UsageError("--push needs a git remote named origin")
    if gto.is_gto_model(model):
        stem = gto.model_in_tag(model)
        try:
            ws.git.fetch("origin", f"refs/tags/{stem}#*:refs/tags/{stem}#*")
        except (IntegrityError, StorageError):
            # git still took every tag it could: one it refused is a local, unpushed tag of the same
            # name (a move made without --push), which never overwrites origin's. The numbering
            # below counts both; an unreachable origin fails the branch fetch next.
            pass
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


def _release_gates(reg: Registry, rel: Release, store: DvcStore, allow_incomplete: str | None,
                   notes: dict, push: bool = False) -> list[gates.GateResult]:
    report = check_releases(reg, [rel], store)
    out = []
    for f in report.findings:
        err = FINDING_ERRORS[f.kind]
        if push and f.kind == MISSING and f.tag == rel.tag and (pushable := _pushable(rel, store)):
            out.append(gates.passed("check", f"{pushable} object(s) of {rel.tag} the DVC remote lacks will be "
                                             "pushed from the local cache first"))
            continue
        if f.kind == INCOMPLETE and f.tag == rel.tag and allow_incomplete and rel.manifest is not None:
            notes["Tether-Allow-Incomplete"] = _one_line(allow_incomplete, "allow-incomplete reason")
            out.append(gates.passed("complete", f"allowed without {', '.join(rel.missing_parts)}: {allow_incomplete}"))
            continue
        if f.tag == rel.tag or f.kind == MOVED:
            hint = ("declare the missing parts in dvc.yaml and release again, or pass --allow-incomplete REASON"
                    if f.kind == INCOMPLETE else "run `tether check` for details")
            out.append(gates.GateResult("check", False, f"{f.tag}: {f.message}", hint, err))
    return [g for g in out if not g.ok] or out or [
        gates.passed("check", f"{rel.tag} is complete, matches its commit, and is on the remote")]


def release_settings(ws: Workspace, rel: Release) -> Settings:
    """The model's settings as the release's own commit declares them. What belongs to a release
    (its eval slice, whether it is smoke-tested, how it is served) is read from there, never from
    HEAD: the same release gets the same verdict whatever is checked out (docs/gates.md)."""
    return settings_at(ws, rel.commit, rel.name.model)


def settings_at(ws: Workspace, commit: str, model: str) -> Settings:
    """`artifacts.<model>.meta.tether` of dvc.yaml at `commit` (one git process)."""
    from tether.adapters.workspace import load_yaml

    text = ws.git.show_or_none(commit, "dvc.yaml")
    doc = load_yaml(text) if text else {}
    art = ((doc.get("artifacts") or {}).get(model) or {}) if isinstance(doc, dict) else {}
    return Settings.from_meta((art.get("meta") or {}) if isinstance(art, dict) else {})


def _pushable(rel: Release, store: DvcStore) -> int:
    """How many objects of `rel` the remote lacks, when the local cache has every one of them
    (0 when it does not: then the check gate fails as before)."""
    from tether.commands.release import all_md5s

    missing = store.missing_on_remote(all_md5s(rel.manifest or {}))
    return len(missing) if missing and not store.missing_in_cache(missing) else 0


def smoke_gate(ws: Workspace, rel: Release, store: DvcStore, settings: Settings | None = None) -> gates.GateResult:
    """Load the bundle from an isolated checkout of the release, predict the frozen eval
    slice, and match the recorded predictions digest and metrics."""
    from tether.runtime import smoke_gate

    settings = settings or release_settings(ws, rel)
    with tempfile.TemporaryDirectory(prefix="tether-smoke-") as tmp:
        try:
            msg = smoke_gate.run_smoke(ws.git, store, rel.require_trusted("smoke-tested"), settings, Path(tmp) / "release")
        except (IntegrityError, StorageError, GateFailed, UsageError) as exc:
            hint = exc.hint
            if "serve.entrypoint" in (hint or "") and not settings.serve.get("entrypoint") \
                    and ws.settings(rel.name.model).serve.get("entrypoint"):
                hint = (f"{rel.tag}'s commit {rel.commit[:12]} declares no meta.tether.serve.entrypoint (HEAD does, "
                        "but a release is served as its own commit says): release again from a commit that declares it")
            return gates.GateResult("smoke", False, exc.message, hint, type(exc))
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
    allow_incomplete: str | None = None,
    smoke: bool = True,
    store: DvcStore | None = None,
    read_only: bool = False,
    sign: bool = False,
) -> MovePlan:
    """The move and its gates. `read_only` (a --dry-run) changes no ref: with --push it plans
    from origin's branch as last fetched instead of fetching and fast-forwarding."""
    approver = _one_line(approver, "approver")
    reason = _one_line(reason, "reason")
    ref: RefArg | None = parse_ref(release_ref) if release_ref else None
    model = ws.model(model or (ref.model if ref else None))
    branch = ws.branch(model, env)
    if ws.git.is_shallow():
        raise UsageError("this is a shallow clone: the environment's history is incomplete",
                         hint="fetch the full history first: git fetch --unshallow")
    if push and not read_only:
        _sync_with_remote(ws, branch, model)
    reg = Registry(ws, messages=False)
    state = reg.env_state(model, env)
    if state.relation == "diverged":
        raise Conflict(f"{branch} has diverged from origin/{branch}",
                       hint=f"inspect both histories (git log --first-parent {branch} origin/{branch}) "
                            "and reconcile them before moving the environment")
    current = reg.live(model, env)
    reg.check_tag_integrity(reg.history(model, env))
    rule = _signature_rule(ws, reg, model, env, sign, approver)

    if action == "rollback":
        if ref is None:
            target = history.rollback_target(reg.history(model, env))
            if target is None:
                raise Conflict(f"nothing to roll back to in {env}: no earlier good release in its history",
                               hint="name one with --release model@vX.Y.Z")
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
    signing.enforce_release(ws, rel)
    if current and current.release == rel.tag:
        raise Conflict(f"{env} already runs {rel.tag}", hint="nothing to do")

    store = store or DvcStore(ws.root)
    # threshold and metrics files DVC tracks are read from their objects: fetch the few missing
    rel = reg.resolve_objects([rel], store)[0]
    plan = MovePlan(model=model, env=env, branch=branch, action=action, release=rel,
                    old_head=state.commit, local_head=state.local, current=current,
                    approver=approver, reason=reason, push=push, sign=sign, signature_rule=rule)
    if env in ws.settings(model).canaries:  # a canary starts at the first step; a rollback sends it nothing
        plan.notes["Tether-Weight"] = str(ws.settings(model).guard.steps[0] if action == "promote" else 0)
    results = _release_gates(reg, rel, store, allow_incomplete, plan.notes, push=push)
    gates.raise_failures(results, action)

    settings = ws.settings(model)
    envs = settings.environments
    if action == "promote":
        cur = reg.by_tag(current.release) if current is not None and current.release else None
        if cur is not None:
            cur = reg.resolve_objects([cur], store)[0]
        unread = {r.tag: _unread_objects(ws, r) for r in (cur, rel) if r is not None and r.unresolved}
        if cur is not None and cur.manifest and unread:
            # Metrics (or a threshold) live in DVC objects neither this clone's cache nor the DVC
            # remote holds: comparing without them would pass here and refuse in the author's
            # clone. Refuse in every clone alike, naming what is missing.
            results.append(gates.unreadable("regression", unread))
        elif cur is not None and cur.manifest:
            reg_gate = gates.regression(cur.manifest.get("metrics") or {}, (rel.manifest or {}).get("metrics") or {},
                                        settings.tolerance, settings.lower_is_better, settings.gate_metrics)
            if not reg_gate.ok and allow_regression:
                plan.notes["Tether-Allow-Regression"] = _one_line(allow_regression, "allow-regression reason")
                reg_gate = gates.passed("regression", f"allowed: {reg_gate.message}")
            results.append(reg_gate)
        else:
            results.append(gates.passed("regression", f"{env} runs nothing yet"))
        idx = envs.index(env) if env in envs else 0  # a GTO stage outside the configured order
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
    own = release_settings(ws, rel) if smoke else settings
    if smoke and own.smoke:
        results.append(smoke_gate(ws, rel, store, own))
    elif smoke:
        results.append(gates.passed("smoke", f"disabled for this model in dvc.yaml at {rel.tag}'s commit "
                                             "(meta.tether.smoke: false)"))
    gates.raise_failures(results, action)
    plan.gates = results
    if not push and ws.git.remote_url("origin"):
        theirs = reg.events_at(env, state.remote, model) if state.remote else []
        plan.local_only = {"branch": branch, "origin_has_branch": state.remote is not None,
                           "origin_release": (theirs[0].release or None) if theirs else None,
                           "push": f"git push origin {branch}"}
    return plan


def _unread_objects(ws: Workspace, rel: Release) -> dict[str, str]:
    """{path at the release's commit: md5} of the DVC objects its derivation could not read
    (after fetching what the remote holds): named from dvc.lock at that commit."""
    from tether.core import dvcgraph
    from tether.adapters.workspace import load_yaml

    try:
        lock = load_yaml(ws.git.show_or_none(rel.commit, "dvc.lock") or "") or {}
        outs = {o.md5: o.path for st in dvcgraph.lock_stages(lock).values() for o in st.outs if o.md5}
    except Exception:  # noqa: BLE001 - only the names suffer: the md5s are named instead
        outs = {}
    return {outs.get(m, f"object {m}"): m for m in rel.unresolved}


def _signature_rule(ws: Workspace, reg: Registry, model: str, env: str, sign: bool,
                    approver: str) -> signpolicy.Rule:
    """The environment's signing rule, after its history so far has passed it: a move onto a
    history the policy rejects, or an unsigned move where one is required, changes nothing."""
    signing.enforce_env(ws, reg, model, env, what="nothing was moved", head=False)
    rule = signing.policy(ws, model).env(env)
    if rule.require_signed and not sign:
        raise IntegrityError(f"{env} requires signed moves (meta.tether.signing in dvc.yaml): this one is unsigned",
                             hint="pass --sign (git signs with your gpg.format and user.signingkey); nothing was moved")
    return rule


def commit_message(plan: MovePlan, time: str) -> str:
    verb = "promote" if plan.action == "promote" else "roll back"
    title = f"{verb} {plan.env} to {plan.release.tag}"
    body = "\n".join(f"{k}: {v}" for k, v in plan.trailers(time).items())
    return f"{title}\n\n{plan.reason}\n\n{body}\n"


def gto_tag_plan(ws: Workspace, reg: Registry, plan: MovePlan) -> tuple[str, str, int] | None:
    """(name, message, unix time) of the GTO assignment tag that records this move for `gto show`
    and `gto history`, or None where GTO cannot express it (names outside GTO's grammar) or the
    model turns it off (`meta.tether.gto: false`)."""
    import time as _time

    from tether.core import gto

    if not ws.settings(plan.model).gto:
        return None
    if not (gto.is_gto_model(plan.model) and gto.is_gto_name(plan.env)):
        return None
    records = reg.gto_records()
    name = gto.next_assignment_tag(plan.model, plan.env, reg.tag_records)
    when = gto.assignment_time(int(_time.time()), records, plan.model)
    return name, gto.assignment_message(plan.model, f"v{plan.release.version}", plan.env), when


def ensure_published(ws: Workspace, plan: MovePlan, store: DvcStore) -> list[str]:
    """Before an environment move is published, the release it names must be usable by every
    other clone: every DVC object of its commit on the DVC remote (publish.py: what plain
    `dvc pull` needs, not only the tuple), then its tag on origin."""
    from tether.adapters import publish
    from tether.commands.release import all_md5s

    done = []
    rel = plan.release
    on_origin = ws.git.remote_tag("origin", rel.tag)
    plan.wanted = {**publish.commit_outputs(ws, rel.commit), **all_md5s(rel.require_trusted("published"))}
    pushed = publish.ensure_on_remote(store, plan.wanted, rel.tag)
    if pushed:
        done.append(f"pushed {len(pushed)} DVC output(s) of {rel.tag}")
    if on_origin is None:
        ws.git.push("origin", f"refs/tags/{rel.tag}:refs/tags/{rel.tag}")
        done.append(f"pushed tag {rel.tag}")
    return done


def execute_move(ws: Workspace, plan: MovePlan, store: DvcStore | None = None) -> str:
    """Create the move commit and swap the branch to it; returns the new commit.
    With --push the release is published first (its objects, its tag), then the environment
    moves on the remote (fast-forward only, atomically with its GTO tag): if someone else got
    there first the push is rejected and our local branch never moved."""
    rel = plan.release
    reg = Registry(ws, messages=False)
    gto_tag = gto_tag_plan(ws, reg, plan)
    if gto_tag:
        plan.notes["Tether-Gto-Tag"] = gto_tag[0]
        if plan.local_only:  # publishing a local move means its GTO record too (gto show reads it)
            plan.local_only["push"] += f" {gto_tag[0]}"
    parents = ([plan.old_head] if plan.old_head else []) + [rel.commit]
    new = ws.git.commit_tree(rel.tree, parents, commit_message(plan, now_iso()), sign=plan.sign)
    if plan.sign or plan.signature_rule.require_signed:
        signing.check_new_move(ws, new, plan.env, plan.approver, plan.signature_rule, None)
    ref = f"refs/heads/{plan.branch}"
    tag_obj, gto_name = None, None
    if gto_tag:
        gto_name, message, when = gto_tag
        tag_obj = ws.git.make_tag_object(gto_name, rel.commit, message, when)
    if plan.push:
        store = store or DvcStore(ws.root)
        plan.published = ensure_published(ws, plan, store)
        specs = [f"{new}:{ref}"] + ([f"{tag_obj}:refs/tags/{gto_name}"] if tag_obj else [])
        ws.git.push("origin", *specs)
    ws.git.update_ref(ref, new, plan.local_head, f"tether: {plan.action} {plan.env} to {rel.tag}")
    if tag_obj:
        try:
            ws.git.update_ref(f"refs/tags/{gto_name}", tag_obj, None, f"tether: gto {gto_name}")
        except Conflict:
            pass  # someone made that GTO tag meanwhile; the branch, tether's record, has moved
    if plan.push and store is not None:
        # a `gc --cloud` elsewhere that read origin before our push may have deleted what we
        # uploaded: now that the move is on origin, ask again and upload what is gone
        from tether.adapters import publish

        again = publish.ensure_on_remote(store, plan.wanted, rel.tag, published=True)
        if again:
            plan.published.append(f"uploaded again {len(again)} DVC output(s) of {rel.tag} the remote lost meanwhile")
    return new

