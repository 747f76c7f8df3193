"""Several environment moves as one: `tether promote --env production a@v1.2.0 b@v3.0.1`.

A model and its preprocessor, a detector and its ranker: releases that must go live together
or not at all. Every gate of every move runs first (tether.commands.move.plan_move, once per
release); nothing changes if any refuses. Then one move commit per environment branch, each
carrying the same `Tether-Group` trailer; with --push every release is published (its DVC
objects, its tag), then ONE `git push --atomic` moves every branch and GTO tag on origin (all
or none: a concurrent move of any of them rejects the whole push); then ONE local
`git update-ref --stdin` transaction moves every local branch (all or none).

`tether rollback --env E --model a` of a move made in a group rolls back every member of the
group that still runs its grouped release, as a new group (`--only` rolls back `a` alone).
"""

from __future__ import annotations

import hashlib
import time as _time
from dataclasses import dataclass

from tether.adapters.dvcstore import DvcStore
from tether.adapters.workspace import Workspace
from tether.clock import now_iso
from tether.commands.move import MovePlan, MoveResult, commit_message, ensure_published, plan_move
from tether.core import moves
from tether.errors import Conflict, UsageError
from tether.registry import signing
from tether.registry.registry import Registry


@dataclass(frozen=True)
class GroupMember:
    """A model whose live move in the environment belongs to the group."""

    model: str
    release: str


def plan_group(ws: Workspace, *, action: str, env: str, refs: list[str | None], models: list[str | None],
               read_only: bool = False, **kw) -> list[MovePlan]:
    """One plan per (release REF, model), every gate run; refuses before anything changes when
    any gate refuses or two moves would move one branch."""
    store = kw.pop("store", None) or DvcStore(ws.root)
    plans: list[MovePlan] = []
    for ref, model in zip(refs, models):
        plan = plan_move(ws, action=action, model=model, env=env, release_ref=ref, store=store,
                         read_only=read_only, **kw)
        if any(p.branch == plan.branch for p in plans):
            raise UsageError(f"two moves of one environment branch ({plan.branch}): "
                             f"{plans[[p.branch for p in plans].index(plan.branch)].release.tag} and {plan.release.tag}",
                             hint="one release per model and environment")
        plans.append(plan)
    return plans


def grouped_with(ws: Workspace, model: str, env: str) -> tuple[str | None, list[GroupMember]]:
    """The group of `model`'s live move in `env` ({None, []} when it was moved alone), and
    every model whose live move in `env` belongs to that group."""
    reg = Registry(ws, messages=False)
    live = reg.live(model, env)
    gid = live.trailers.get(moves.GROUP) if live is not None and live.source == "tether" else None
    if not gid:
        return None, []
    members = []
    for m in ws.models:
        if env not in ws.environments(m):
            continue
        ev = reg.live(m, env)
        if ev is not None and ev.source == "tether" and ev.trailers.get(moves.GROUP) == gid:
            members.append(GroupMember(m, ev.release))
    return gid, members


def group_id(plans: list[MovePlan], time: str) -> str:
    """Names the group: the moves it makes and when."""
    what = "\n".join(sorted(f"{p.branch} {p.release.tag}" for p in plans)) + "\n" + time
    return "g-" + hashlib.sha256(what.encode()).hexdigest()[:16]


def execute_group(ws: Workspace, plans: list[MovePlan], store: DvcStore | None = None) -> list[MoveResult]:
    """Every move of the group, or none (see the module's docstring)."""
    if len({p.push for p in plans}) > 1 or len({p.env for p in plans}) > 1:
        raise UsageError("a group of moves shares one environment and one --push")
    now, time = int(_time.time()), now_iso()
    gid = group_id(plans, time)
    plans = [p.with_notes({moves.GROUP: gid}) for p in plans]
    made: list[tuple[MovePlan, str, str | None]] = []
    for plan in plans:
        rel = plan.release
        parents = ([plan.old_head] if plan.old_head else []) + [rel.commit]
        new = ws.git.commit_tree(rel.tree, parents, commit_message(plan, time), sign=plan.sign)
        if plan.sign or plan.signature_rule.require_signed:
            signing.check_new_move(ws, new, plan.env, plan.approver, plan.signature_rule, None)
        gto = plan.gto_tag
        tag_obj = ws.git.make_tag_object(gto.name, rel.commit, gto.message, gto.time(now)) if gto else None
        made.append((plan, new, tag_obj))
    published: list[str] = []
    wanted: list[tuple[str, dict[str, str]]] = []
    if plans[0].push:
        store = store or DvcStore(ws.root)
        for plan in plans:
            done, want = ensure_published(ws, plan.release, store)
            published += done
            wanted.append((plan.release.tag, want))
        specs = [f"{new}:refs/heads/{p.branch}" for p, new, _t in made]
        specs += [f"{t}:refs/tags/{p.gto_tag.name}" for p, _n, t in made if t and p.gto_tag]
        ws.git.push("origin", *specs)  # --atomic: every ref or none
    ws.git.update_refs([(f"refs/heads/{p.branch}", new, p.local_head) for p, new, _t in made],
                       f"tether: {plans[0].action} {plans[0].env} ({len(plans)} moves, {gid})")
    for p, _n, t in made:
        if t and p.gto_tag:
            try:
                ws.git.update_ref(f"refs/tags/{p.gto_tag.name}", t, None, f"tether: gto {p.gto_tag.name}")
            except Conflict:
                pass  # someone made that GTO tag meanwhile; the branch, tether's record, has moved
    if store is not None and wanted:
        from tether.adapters import publish

        for tag, want in wanted:  # a `gc --cloud` elsewhere may have deleted what we uploaded
            if again := publish.ensure_on_remote(store, want, tag, published=True):
                published.append(f"uploaded again {len(again)} DVC output(s) of {tag} the remote lost meanwhile")
    return [MoveResult(p, new, published if i == 0 else []) for i, (p, new, _t) in enumerate(made)]
