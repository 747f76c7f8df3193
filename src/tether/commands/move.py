"""`tether promote` and `tether rollback`: gates, then a compare-and-swap move of the
environment branch to a new commit whose tree IS the release's tree."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tether.core import gates
from tether.core import history
from tether.core import moves
from tether.registry import signing
from tether.core import signpolicy
from tether.clock import now_iso
from tether.adapters.dvcstore import DvcStore
from tether.errors import Conflict, IntegrityError, StorageError, UsageError
from tether.core.refs import RefArg, parse_ref
from tether.core.moves import Event
from tether.commands.move_gates import move_gates
from tether.registry.envstate import EnvState
from tether.registry.registry import Registry
from tether.registry.release import Release
from tether.adapters.workspace import Workspace


@dataclass(frozen=True)
class GtoTag:
    """The GTO assignment tag that records a move for `gto show` and `gto history`."""

    name: str
    message: str
    not_before: int  # its tagger date (Unix seconds) is now, but strictly after every GTO tag of the model

    def time(self, now: int) -> int:
        return max(now, self.not_before)


@dataclass(frozen=True)
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
    gates: list[gates.GateResult] = field(default_factory=list)
    sign: bool = False  # a signed move commit (git's own signing: `commit-tree -S`)
    signature_rule: signpolicy.Rule = field(default_factory=signpolicy.Rule)
    # without --push, with an origin: {"branch", "origin_release", "push"}: hosts deploying from
    # origin do not see this move until it is pushed (and `tether deploy` here refuses until then)
    local_only: dict | None = None
    gto_tag: GtoTag | None = None  # None where GTO cannot express the move or the model turns it off

    def with_notes(self, extra: dict) -> MovePlan:
        """The same move with more trailers, recorded after the plan's own."""
        return dataclasses.replace(self, notes={**self.notes, **extra})

    def recorded_notes(self) -> dict[str, str]:
        """The extra trailers as the move commit records them: the GTO tag comes last."""
        return {**self.notes, **({moves.GTO_TAG: self.gto_tag.name} if self.gto_tag else {})}

    def publish_command(self) -> dict | None:
        """`local_only` as the moved commit leaves it: publishing a local move means its GTO
        record too (gto show reads it)."""
        if self.local_only is None or self.gto_tag is None:
            return self.local_only
        return {**self.local_only, "push": f"{self.local_only['push']} {self.gto_tag.name}"}

    def trailers(self, time: str) -> dict[str, str]:
        return {
            moves.ACTION: self.action,
            moves.RELEASE: self.release.tag,
            moves.TAG_OBJECT: self.release.tag_object,
            moves.PREVIOUS: (self.current.release or "none") if self.current else "none",
            moves.APPROVER: self.approver,
            moves.REASON: self.reason,
            **self.recorded_notes(),
            moves.TIME: time,
        }

    def as_dict(self, moved: bool = False) -> dict:
        """The plan (`moved`: as the move commit recorded it, with its GTO tag)."""
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
            "notes": self.recorded_notes() if moved else self.notes,
            "gates": [g.as_dict() for g in self.gates],
            "local_only": self.publish_command() if moved else self.local_only,
        }


@dataclass(frozen=True)
class MoveResult:
    """What `execute_move` did: the new commit, and what --push had to publish first."""

    plan: MovePlan
    commit: str
    published: list[str] = field(default_factory=list)

    @property
    def local_only(self) -> dict | None:
        return self.plan.publish_command()

    def as_dict(self) -> dict:
        return {"commit": self.commit, **self.plan.as_dict(moved=True)}


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
    override_rollback: str | None = None,
    smoke: bool = True,
    store: DvcStore | None = None,
    read_only: bool = False,
    sign: bool = False,
) -> MovePlan:
    """The move and its gates. `read_only` (a --dry-run) changes no ref: with --push it plans
    from origin's branch as last fetched instead of fetching and fast-forwarding."""
    approver = moves.one_line(approver, "approver")
    reason = moves.one_line(reason, "reason")
    ref: RefArg | None = parse_ref(release_ref) if release_ref else None
    model = ws.model(model or (ref.model if ref else None))
    branch = ws.branch(model, env)
    reg, state = _read_env(ws, model, env, branch, sync=push and not read_only)
    current = reg.live(model, env)
    reg.check_tag_integrity(reg.history(model, env))
    rule = _signature_rule(ws, reg, model, env, sign, approver)
    rel = _target(ws, reg, action, ref, model, env, current)
    store = store or DvcStore(ws.root)
    # threshold and metrics files DVC tracks are read from their objects: fetch the few missing
    rel = reg.resolve_objects([rel], store)[0]
    notes: dict[str, str] = {}
    if env in ws.settings(model).canaries:  # a canary starts at the first step; a rollback sends it nothing
        notes[moves.WEIGHT] = str(ws.settings(model).guard.steps[0] if action == "promote" else 0)
    results = move_gates(ws, reg, rel, store, action=action, env=env, current=current, notes=notes,
                         allow_incomplete=allow_incomplete, allow_regression=allow_regression,
                         skip_staging=skip_staging, smoke=smoke, push=push, override_rollback=override_rollback)
    return MovePlan(model=model, env=env, branch=branch, action=action, release=rel,
                    old_head=state.commit, local_head=state.local, current=current,
                    approver=approver, reason=reason, push=push, notes=notes, gates=results, sign=sign,
                    signature_rule=rule, local_only=None if push else _local_only(ws, reg, model, env, branch, state),
                    gto_tag=gto_tag_plan(ws, reg, model, env, rel))


def _read_env(ws: Workspace, model: str, env: str, branch: str, sync: bool) -> tuple[Registry, EnvState]:
    """The registry and the environment's state, after syncing with origin (`sync`: --push)."""
    if ws.git.is_shallow():
        raise UsageError("this is a shallow clone: the environment's history is incomplete",
                         hint="fetch the full history first: git fetch --unshallow")
    if sync:
        _sync_with_remote(ws, branch, model)
    reg = Registry(ws, messages=False)
    state = reg.env_state(model, env)
    if state.relation == "diverged":
        raise Conflict(f"{branch} has diverged from origin/{branch}",
                       hint=f"inspect both histories (git log --first-parent {branch} origin/{branch}) "
                            "and reconcile them before moving the environment")
    return reg, state


def _target(ws: Workspace, reg: Registry, action: str, ref: RefArg | None, model: str, env: str,
            current: Event | None) -> Release:
    """The release the move goes to: REF, or for a rollback without one the last good release."""
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
    return rel


def _local_only(ws: Workspace, reg: Registry, model: str, env: str, branch: str, state: EnvState) -> dict | None:
    """Without --push, with an origin: what hosts deploying from origin still see."""
    if not ws.git.remote_url("origin"):
        return None
    theirs = reg.events_at(env, state.remote, model) if state.remote else []
    return {"branch": branch, "origin_has_branch": state.remote is not None,
            "origin_release": (theirs[0].release or None) if theirs else None,
            "push": f"git push origin {branch}"}


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
    return moves.move_message(f"{verb} {plan.env} to {plan.release.tag}", plan.reason, plan.trailers(time))


def gto_tag_plan(ws: Workspace, reg: Registry, model: str, env: str, rel: Release) -> GtoTag | None:
    """The GTO assignment tag that records this move for `gto show` and `gto history`, or None
    where GTO cannot express it (names outside GTO's grammar) or the model turns it off
    (`meta.tether.gto: false`)."""
    from tether.core import gto

    if not ws.settings(model).gto:
        return None
    if not (gto.is_gto_model(model) and gto.is_gto_name(env)):
        return None
    name = gto.next_assignment_tag(model, env, reg.tag_records)
    after = gto.assignment_time(0, reg.gto_records(), model)  # strictly after every GTO tag of the model
    return GtoTag(name, gto.assignment_message(model, f"v{rel.version}", env), after)


def ensure_published(ws: Workspace, rel: Release, store: DvcStore) -> tuple[list[str], dict[str, str]]:
    """Before an environment move is published, the release it names must be usable by every
    other clone: every DVC object of its commit on the DVC remote (publish.py: what plain
    `dvc pull` needs, not only the tuple), then its tag on origin. Returns what it did, and
    the {md5: path} it made sure the remote holds."""
    from tether.adapters import publish

    done = []
    on_origin = ws.git.remote_tag("origin", rel.tag)
    wanted = {**publish.commit_outputs(ws, rel.commit), **publish.all_md5s(rel.require_trusted("published"))}
    pushed = publish.ensure_on_remote(store, wanted, rel.tag)
    if pushed:
        done.append(f"pushed {len(pushed)} DVC output(s) of {rel.tag}")
    if on_origin is None:
        ws.git.push("origin", f"refs/tags/{rel.tag}:refs/tags/{rel.tag}")
        done.append(f"pushed tag {rel.tag}")
    return done, wanted


def execute_move(ws: Workspace, plan: MovePlan, store: DvcStore | None = None) -> MoveResult:
    """Create the move commit and swap the branch to it; returns the new commit (a MoveResult).
    With --push the release is published first (its objects, its tag), then the environment
    moves on the remote (fast-forward only, atomically with its GTO tag): if someone else got
    there first the push is rejected and our local branch never moved."""
    import time as _time

    now = int(_time.time())  # the GTO tag's date, when the move started
    rel = plan.release
    parents = ([plan.old_head] if plan.old_head else []) + [rel.commit]
    new = ws.git.commit_tree(rel.tree, parents, commit_message(plan, now_iso()), sign=plan.sign)
    if plan.sign or plan.signature_rule.require_signed:
        signing.check_new_move(ws, new, plan.env, plan.approver, plan.signature_rule, None)
    ref = f"refs/heads/{plan.branch}"
    tag_obj, gto = None, plan.gto_tag
    if gto:
        tag_obj = ws.git.make_tag_object(gto.name, rel.commit, gto.message, gto.time(now))
    published: list[str] = []
    wanted: dict[str, str] = {}
    if plan.push:
        store = store or DvcStore(ws.root)
        published, wanted = ensure_published(ws, rel, store)
        specs = [f"{new}:{ref}"] + ([f"{tag_obj}:refs/tags/{gto.name}"] if tag_obj and gto else [])
        ws.git.push("origin", *specs)
    ws.git.update_ref(ref, new, plan.local_head, f"tether: {plan.action} {plan.env} to {rel.tag}")
    if tag_obj and gto:
        try:
            ws.git.update_ref(f"refs/tags/{gto.name}", tag_obj, None, f"tether: gto {gto.name}")
        except Conflict:
            pass  # someone made that GTO tag meanwhile; the branch, tether's record, has moved
    if plan.push and store is not None:
        # a `gc --cloud` elsewhere that read origin before our push may have deleted what we
        # uploaded: now that the move is on origin, ask again and upload what is gone
        from tether.adapters import publish

        again = publish.ensure_on_remote(store, wanted, rel.tag, published=True)
        if again:
            published.append(f"uploaded again {len(again)} DVC output(s) of {rel.tag} the remote lost meanwhile")
    return MoveResult(plan, new, published)
