"""Events from git: every environment move, release tag and GTO assignment as a CloudEvent.

One derivation serves both ends. `tether events --since T` reads the whole registry and keeps
the events from T on; the post-receive hook (tether.commands.event_hook) keeps the events a push
brought (the environment commits, release tags and GTO tags it added). Both read the same
history (the branches' first-parent logs with their signature verdicts, the tags), so a push's
event and its replay are the same event, `id` included.

Which events a model sends and where: `artifacts.<model>.meta.tether.events` in dvc.yaml,
`{urls: [...], source: URI}` (tether.core.cloudevents.Policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tether.adapters.workspace import Workspace
from tether.clock import parse_iso
from tether.core import cloudevents as ce
from tether.core.moves import GTO_TAG


@dataclass(frozen=True)
class Found:
    """One event and what in git it describes: ("move", env, commit), ("tag", tag) or
    ("gto", gto tag name)."""

    key: tuple[str, ...]
    event: dict


def derive(ws: Workspace, model: str, signers: Path | None) -> list[Found]:
    """Every event of `model`, oldest first."""
    from tether.registry import signing
    from tether.registry.registry import Registry

    reg = Registry(ws, messages=True)
    source = ce.policy(ws.settings(model).events).source_for(model)
    out: list[Found] = []
    written: set[str] = set()  # the GTO tags tether's own moves wrote: their move is the event
    seen_gto: set[str] = set()
    for env in ws.environments(model):
        events = reg.history(model, env)
        verdicts = {v.commit: v for v in signing.env_verdicts(ws, reg, model, env, signers, events=events)}
        for ev in events:
            written.add(ev.trailers.get(GTO_TAG, ""))
            if ev.source == "gto":
                seen_gto.add(ev.trailers.get("Gto-Tag", ""))
            row = {**ev.__dict__, "signature": verdicts[ev.commit].as_dict() if ev.commit in verdicts else None}
            key = ("gto", ev.trailers.get("Gto-Tag", "")) if ev.source == "gto" else ("move", env, ev.commit)
            out.append(Found(key, ce.move_event(source, model, env, row)))
    for env in ws.environments(model):
        for ev in reg.gto_events(model, env):  # GTO assignments made beside the branch
            name = ev.trailers.get("Gto-Tag", "")
            if name in written or name in seen_gto:
                continue
            seen_gto.add(name)
            out.append(Found(("gto", name), ce.move_event(source, model, env, {**ev.__dict__, "signature": None})))
    for rel in reg.of(model):
        out.append(Found(("tag", rel.tag), ce.release_event(source, model, rel.tag, rel.tag_object, rel.commit,
                                                              rel.created_at, rel.creator, rel.note)))
    return sorted(out, key=lambda f: ce.instant(f.event))


def since(ws: Workspace, when: datetime | None, model: str | None = None) -> list[dict]:
    """`tether events --since T`: the events of every model (or one) from T on, oldest first."""
    from tether.registry import signing

    signers = signing.allowed_signers(ws)
    models = [ws.model(model)] if model else list(ws.models)
    found = [f for m in models for f in derive(ws, m, signers)]
    events = [f.event for f in found]
    if when is not None:
        events = [e for e in events if (t := parse_iso(e["time"])) is not None and t >= when]
    return ce.order(events)
