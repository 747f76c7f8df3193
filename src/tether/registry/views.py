"""What the read commands show, gathered from the registry: `list` rows and `status` per model.
The CLI only renders these (a table, or `--json`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tether.adapters.refindex import PATTERNS, RefIndex
from tether.adapters.workspace import Workspace

if TYPE_CHECKING:
    from tether.core.manifest import ManifestDiff
    from tether.core.refs import RefArg
    from tether.registry.envstate import EnvState

# The registry is imported only to compute an answer. Each view has a `kept_…` twin that answers
# from a kept view alone, or returns None: it never computes and never refuses (the read fast
# path, tether.cli.fastread, which falls back to the whole CLI on None).


# One `list` row: these fields, in this order (the view keeps rows as lists, a third of the bytes).
ROW_FIELDS = ("model", "version", "tag", "stage", "created_at", "commit", "complete", "problem", "kind", "metrics",
              "note")


@dataclass
class EnvView:
    release: str | None  # the release it runs; None when empty or at a commit that is no release
    outside_commit: str | None  # the head, when it was committed outside tether and is no release
    state: EnvState
    gto: dict | None = None  # GTO's tags disagree with the branch (Registry.gto_disagreement)


@dataclass
class ModelStatus:
    model: str
    latest: str | None
    environments: dict[str, EnvView] = field(default_factory=dict)
    head: str = ""
    dirty: bool = False
    matches: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"model": self.model, "latest": self.latest,
                "environments": {e: v.release for e, v in self.environments.items()},
                "refs": {e: v.state.as_dict() for e, v in self.environments.items()},
                "gto": {e: v.gto for e, v in self.environments.items() if v.gto},
                "workspace": {"commit": self.head, "dirty": self.dirty, "matches": self.matches}}


NOTES = "notes"  # in the keys of the `list` and `show` views: those kept before notes were shown are not read


def _kept(ws: Workspace, view: str, *args: str | bytes) -> tuple[RefIndex, str, Any]:
    """(index, key, the kept answer or None) of `view` for the ref state as it is now, dvc.yaml
    and `args` (the view's other inputs)."""
    index = RefIndex(ws.git)
    key = index.view_key(index.snapshot(*PATTERNS), ws.dvc_yaml_text, *args)
    return index, key, index.view(view, key)


def _rows(hit) -> list[dict] | None:
    """A kept `list` answer as dicts with ROW_FIELDS, or None when nothing is kept."""
    return [dict(zip(ROW_FIELDS, r)) for r in hit] if isinstance(hit, list) else None


def kept_release_rows(ws: Workspace, model: str | None) -> list[dict] | None:
    return _rows(_kept(ws, "list", model or "", NOTES)[2])


def release_rows(ws: Workspace, model: str | None) -> list[dict]:
    """Every release of the model (or of every model), newest SemVer first, as dicts with
    ROW_FIELDS. The answer is kept under the digest of the ref state and dvc.yaml it came from
    (tether.adapters.refindex): the same state is answered from one file."""
    index, key, hit = _kept(ws, "list", model or "", NOTES)
    if (kept := _rows(hit)) is not None:
        return kept
    from tether.registry.registry import Registry

    # Tag messages are read lazily: a warm summary cache needs none of them (Registry.summaries).
    reg = Registry(ws, messages=False, index=index)
    models = [ws.model(model)] if model else sorted(ws.models)
    for m in models:
        if not reg.summary_cached(m):
            reg.read_messages(m)  # one process for the messages a cold summary needs
    rows = []
    for m in models:
        summary, stages = reg.summaries(m), reg.stages(m)
        for rel in reg.of(m):
            s = summary[rel.tag]
            rows.append([m, str(rel.version), rel.tag, stages[rel.tag], rel.created_at, rel.commit, s["complete"],
                         s["problem"], s["kind"], s["metrics"], s.get("note")])
    if reg.settled:  # computed from the very ref state the key names
        index.keep_view("list", key, rows)
    return [dict(zip(ROW_FIELDS, r)) for r in rows]


def model_status(ws: Workspace, model: str | None) -> list[ModelStatus]:
    """Per model: the latest release, what each environment runs (and from which ref), and
    which releases the workspace's HEAD tree is. All but the workspace part is kept under the
    digest of the ref state and dvc.yaml (see release_rows)."""
    index, key, data = _kept(ws, "status", model or "")
    if not isinstance(data, list):
        from tether.registry.registry import Registry

        reg = Registry(ws, messages=False, index=index)
        data = []
        for m in [ws.model(model)] if model else sorted(ws.models):
            latest = reg.latest(m)
            trees: dict[str, list[str]] = {}
            for r in reg.of(m):
                trees.setdefault(r.tree, []).append(r.tag)
            envs = {}
            for env in ws.environments(m):
                ev = reg.live(m, env)
                outside = ev.commit if ev and not ev.release else None
                envs[env] = {"release": None if outside else reg.live_release(m, env), "outside": outside,
                             "state": dataclasses.asdict(reg.env_state(m, env)),
                             "gto": reg.gto_disagreement(m, env)}
            data.append({"model": m, "latest": latest.tag if latest else None, "environments": envs,
                         "trees": trees})
        if reg.settled:
            index.keep_view("status", key, data)
    return _status(ws, data)


def kept_model_status(ws: Workspace, model: str | None) -> list[ModelStatus] | None:
    data = _kept(ws, "status", model or "")[2]
    return _status(ws, data) if isinstance(data, list) else None


def _status(ws: Workspace, data: list) -> list[ModelStatus]:
    """The kept part of `status` with the workspace's part: HEAD, whether it is dirty, and
    which releases its tree is."""
    from tether.registry.envstate import EnvState

    head = ws.git.head()
    tree = ws.git.tree_of(head)
    dirty = bool(ws.git.status_porcelain())
    out = []
    for d in data:
        st = ModelStatus(d["model"], d["latest"], head=head, dirty=dirty, matches=d["trees"].get(tree, []))
        for env, v in d["environments"].items():
            st.environments[env] = EnvView(v["release"], v["outside"], EnvState(**v["state"]), v.get("gto"))
        out.append(st)
    return out


def env_history(ws: Workspace, model: str | None, env: str | None, at: str | None) -> dict:
    """`tether history`: each environment's moves, newest first, with each move's signature
    verdict. Kept under the digest of the ref state, dvc.yaml and the allowed signers file;
    `--at` is answered from the kept moves. A tag moved after it went live is refused every
    time (never kept)."""
    from tether.registry import signing

    signers, (index, key, out) = _kept_history(ws, model, env)
    if not isinstance(out, dict):
        from tether.registry.registry import Registry

        reg = Registry(ws, messages=False, index=index)  # first: it may adopt the tags' models
        model = ws.model(model)
        envs = [env] if env else list(ws.environments(model))
        out = {"model": model, "environments": {}}
        keyring = False
        for e in envs:
            ws.branch(model, e)  # validates the name
            events = reg.history(model, e)
            reg.check_tag_integrity(events)
            st = reg.env_state(model, e)
            verdicts = {v.commit: v for v in signing.env_verdicts(ws, reg, model, e, signers, events=events,
                                                                  remembered=True)}
            # an SSH verdict depends on the commit and the allowed signers file (in the key); an
            # OpenPGP one on the keyring too, which is outside git: such an answer is never kept
            keyring |= any(v.signature.signed and not v.signature.key.startswith("SHA256:")
                           for v in verdicts.values())
            rows = [{**ev.__dict__, "signature": verdicts[ev.commit].as_dict() if ev.commit in verdicts else None}
                    for ev in events]
            if bad := signing.violations(list(verdicts.values())):
                out.setdefault("refused", str(signing.refuse(e, bad)))
            out["environments"][e] = {"branch": ws.branch(model, e), "ref": st.as_dict(), "events": rows}
        if reg.settled and not keyring:
            index.keep_view("history", key, out)
    return _live_at(out, at)


def kept_env_history(ws: Workspace, model: str | None, env: str | None, at: str | None) -> dict | None:
    _signers, (_index, _key, out) = _kept_history(ws, model, env)
    return _live_at(out, at) if isinstance(out, dict) else None


def _kept_history(ws: Workspace, model: str | None, env: str | None):
    """(the allowed signers file, _kept(…)): history's answer also depends on who may sign."""
    from tether.registry import signing

    signers = signing.allowed_signers(ws)
    return signers, _kept(ws, "history", model or "", env or "", signers.read_bytes() if signers else b"")


def _live_at(out: dict, at: str | None) -> dict:
    """With `--at`: which release each environment ran then, from the kept moves."""
    if at:
        from tether.core import history

        when = history.parse_time(at)
        for entry in out["environments"].values():
            live = history.live_at(entry["events"], when, time=lambda ev: ev["time"])
            entry["live_at"] = {"at": at, "release": live["release"] if live else None,
                                "commit": live["commit"] if live else None}
    return out


def shown_release(ws: Workspace, ref: str, model: str | None) -> dict:
    """`tether show REF`: {tag, stage, manifest} of the release REF names, refused (exit 6)
    if it cannot be trusted. Kept under the digest of the ref state and dvc.yaml (a refusal
    is never kept)."""
    from tether.core.refs import parse_ref

    index, key, hit = _kept(ws, "show", ref, model or "", NOTES)
    if isinstance(hit, dict):
        return hit
    from tether.registry.registry import Registry

    reg = Registry(ws, messages=False, index=index)
    rel = reg.resolve(latest_named(ws, parse_ref(ref), model), model)
    out = {"tag": rel.tag, "stage": reg.stage(rel), "manifest": rel.require_trusted("shown"), "note": rel.note}
    if reg.settled:
        index.keep_view("show", key, out)
    return out


def latest_named(ws: Workspace, ref: RefArg, model: str | None) -> RefArg:
    """`show latest`, and `show MODEL` (a model's name that is none of its environments): that
    model's latest release. Any other REF as it is."""
    from tether.core.refs import LATEST, RefArg

    word = ref.env
    if word == LATEST and LATEST not in ws.environments(ws.model(model)):
        return RefArg(model=model, latest=True)
    if word and word in ws.models and model in (None, word) and word not in ws.environments(word):
        return RefArg(model=word, latest=True)
    return ref


def kept_shown_release(ws: Workspace, ref: str, model: str | None) -> dict | None:
    hit = _kept(ws, "show", ref, model or "", NOTES)[2]
    return hit if isinstance(hit, dict) else None


def release_diff(ws: Workspace, a: str, b: str) -> ManifestDiff:
    """`tether diff A B`: what changed between the releases two REFs name, component by
    component (tether.core.manifest.diff); refused (exit 6) if either cannot be trusted."""
    from tether.core.manifest import diff
    from tether.core.refs import parse_ref
    from tether.registry.registry import Registry

    reg = Registry(ws, messages=False, cached=True)
    ra, rb = (reg.resolve(latest_named(ws, parse_ref(r), None), None) for r in (a, b))
    return diff(ra.require_trusted("compared"), rb.require_trusted("compared"))
