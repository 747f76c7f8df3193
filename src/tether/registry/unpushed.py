"""An environment move this clone holds and origin does not: what deploy and `k8s render`
refuse, because hosts and pods that fetch from origin would serve another release than the one
this clone's registry names."""

from __future__ import annotations

from tether.core import moves
from tether.core.moves import Event
from tether.errors import Conflict
from tether.registry.registry import Registry


def _describe(ev: Event | None, commit: str) -> str:
    if ev is None or not ev.release:
        return f"commit {commit[:12]} (no release)"
    who = f"{ev.action} by {ev.approver}, " if ev.source == "tether" and ev.approver else ""
    return f"{ev.release} ({who}commit {commit[:12]})"


def refuse_unpushed(reg: Registry, model: str, env: str, branch: str, did: str = "deployed",
                    verb: str = "deploy") -> None:
    """Conflict (exit 4) when this clone's branch of the environment holds a move origin does
    not: origin's release is what every host deploying from origin serves, this clone's is
    what `tether status` here says; deploying (or rendering) either would leave one of them untrue.
    A branch merely behind origin's is stale: origin's is used, as before. `did`/`verb` name
    what the caller would have done ("deployed"/"deploy", "rendered"/"render")."""
    state = reg.env_state(model, env)
    if state.relation not in ("ahead", "diverged") or state.local is None or state.remote is None:
        return
    mine = reg.events_at(env, state.local, model)
    theirs = reg.events_at(env, state.remote, model)
    local = _describe(mine[0] if mine else None, state.local)
    remote = _describe(theirs[0] if theirs else None, state.remote)
    if state.relation == "ahead":
        gto = [ev.trailers[moves.GTO_TAG] for ev in mine
               if ev.trailers.get(moves.GTO_TAG) and reg.ws.git.ref(f"refs/tags/{ev.trailers[moves.GTO_TAG]}")
               and not reg.ws.git.is_ancestor(ev.commit, state.remote)]
        push = " ".join(["git push origin", branch, *gto])
        raise Conflict(
            f"{env}: this clone's {branch} is {local}, not pushed; origin's is {remote}. "
            f"Hosts that deploy from origin serve {remote.split(' (')[0]}; nothing was {did}",
            hint=f"finish the move first: {push} (a move made with --push is published at once), "
                 f"then {verb} again; or, to serve origin's release, reset {branch} to origin/{branch}")
    raise Conflict(
        f"{env}: this clone's {branch} ({local}) and origin's ({remote}) have diverged; nothing was {did}",
        hint=f"inspect both histories (git log --first-parent {branch} origin/{branch}) and reconcile them, "
             f"then {verb} again")
