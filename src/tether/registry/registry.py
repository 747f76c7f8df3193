"""The registry, read in one pass: one `git for-each-ref` over release tags and environment
branches, plus one first-parent `git log` per environment that has moved. Never ordered by
timestamps: releases sort by SemVer, environment events by their position in history."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from tether.core import manifest as mf
from tether.errors import GateFailed, IntegrityError, NotFound, UsageError
from tether.adapters.gitrepo import LogEntry, RefRecord
from tether.adapters.refindex import PATTERNS
from tether.core.refs import RefArg, ReleaseName, parse_tag
from tether.core.moves import ACTIONS, Event
from tether.core.semver import Version
from tether.adapters.workspace import Workspace

if TYPE_CHECKING:
    from tether.registry import derive
    from tether.adapters.refindex import RefIndex

# How an environment's local branch stands to origin's (EnvState.relation).
Relation = Literal["same", "local-only", "remote-only", "ahead", "behind", "diverged", "absent"]

# The one verdict on "not a usable release" and its exit code, the same in every command:
# a part is missing (5, `promote --allow-incomplete` overrides); the tag message lies about
# its commit, or the commit holds no usable pipeline for the model (6).
PROBLEM_ERRORS = {"incomplete": GateFailed, "mismatch": IntegrityError, "unusable": IntegrityError}


@dataclass(frozen=True)
class Release:
    """A release tag. Its manifest is DERIVED from the tagged commit (see derive.py), whoever
    made the tag; the manifest in an annotated tag's message is only an attestation checked
    against it. Derivation is batched per model by the registry on first use."""

    name: ReleaseName
    tag: str
    tag_object: str
    commit: str
    tree: str
    created_at: str
    creator: str
    annotated: bool
    message: str | None  # None: not read yet (see Registry(messages=False))
    loader: Callable[[str], str] | None = field(default=None, repr=False, compare=False)
    deriver: Callable[["Release"], derive.Derived] | None = field(default=None, repr=False, compare=False)

    @property
    def version(self):
        return self.name.version

    @cached_property
    def attested(self) -> dict | None:
        """The manifest `tether release` wrote into the tag message, if any and well-formed."""
        if not self.annotated:
            return None
        if self.message is not None:
            message = self.message
        elif self.loader is not None:
            message = self.loader(self.tag_object)
        else:
            return None
        try:
            return mf.loads(message)
        except mf.ManifestError:
            return None

    @cached_property
    def _state(self) -> dict:
        from tether.registry import derive

        if self.deriver is None:
            raise TypeError("a Release needs its registry's deriver")
        d = self.deriver(self)
        if d.manifest is None:
            return {"manifest": None, "problem": "; ".join(d.problems) or "no pipeline at its commit",
                    "kind": "unusable", "missing": [], "fixes": {}, "attestation": [], "unresolved": []}
        attested = self.attested
        att = []
        if attested is not None:
            if attested.get("model") != self.name.model or attested.get("version") != str(self.name.version):
                att.append(f"its message describes {attested.get('model')}@v{attested.get('version')}")
            att += derive.attestation_problems(d.manifest, attested, partial=bool(d.unresolved))
        meta = {"model": self.name.model, "version": str(self.name.version),
                "created_at": self.created_at, "released_by": self.creator}
        manifest = derive.merge(d.manifest, attested if not att else None, meta)
        problem, kind = None, None
        if att:
            problem, kind = "the manifest in its tag message disagrees with its commit: " + "; ".join(att), "mismatch"
        elif d.problems:
            problem, kind = "; ".join(d.problems), "unusable"
        elif d.missing_parts:
            problem, kind = "incomplete: no " + ", ".join(d.missing_parts), "incomplete"
        return {"manifest": manifest, "problem": problem, "kind": kind, "missing": d.missing_parts,
                "fixes": d.fixes, "attestation": att, "unresolved": d.unresolved}

    @property
    def manifest(self) -> dict | None:
        return self._state["manifest"]

    @property
    def problem(self) -> str | None:
        return self._state["problem"]

    @property
    def problem_kind(self) -> str | None:
        """None, "incomplete" (a part is missing), "mismatch" (the attestation lies), or
        "unusable" (no pipeline for the model at its commit)."""
        return self._state["kind"]

    def require_trusted(self, what: str) -> dict:
        """The manifest, unless the release cannot be trusted: its tag message lies about its
        commit (mismatch) or its commit holds no usable pipeline (exit 6, nothing done). An
        incomplete release passes: what it lacks is the gates' business (promote)."""
        if self.manifest is None or self.problem_kind in ("mismatch", "unusable"):
            raise PROBLEM_ERRORS[self.problem_kind or "unusable"](
                f"{self.tag} cannot be {what}: {self.problem}",
                hint=f"the tag or its commit was made or edited by hand; see `tether check` for {self.tag}")
        return self.manifest

    @property
    def missing_parts(self) -> list[str]:
        return self._state["missing"]

    @property
    def fixes(self) -> dict:
        return self._state["fixes"]

    @property
    def unresolved(self) -> list[str]:
        return self._state["unresolved"]


@dataclass(frozen=True)
class EnvState:
    """Where an environment's branch is, locally and on origin, and which one a command uses.
    A fresh clone has only origin's; a local branch behind origin's is stale and origin's wins;
    one ahead holds unpushed moves and is used; diverged ones are reported and refused for moves."""

    model: str
    env: str
    branch: str
    local: str | None
    remote: str | None
    relation: Relation

    @property
    def commit(self) -> str | None:
        if self.relation in ("behind", "remote-only"):
            return self.remote
        return self.local

    @property
    def used(self) -> str | None:
        if self.commit is None:
            return None
        return f"origin/{self.branch}" if self.commit == self.remote and self.local != self.remote else self.branch

    def as_dict(self) -> dict:
        return {"branch": self.branch, "local": self.local, "remote": self.remote,
                "relation": self.relation, "used": self.used}


def parse_event(env: str, e: LogEntry) -> Event | None:
    t = e.trailers
    if t.get("Tether-Action") not in ACTIONS or "Tether-Release" not in t:
        return None
    return Event(
        env=env,
        commit=e.commit,
        action=t["Tether-Action"],
        release=t["Tether-Release"],
        tag_object=t.get("Tether-Tag-Object", ""),
        previous=t.get("Tether-Previous", "none"),
        approver=t.get("Tether-Approver", ""),
        reason=t.get("Tether-Reason", ""),
        time=t.get("Tether-Time", e.date),
        tree=e.tree,
        trailers=t,
    )


def outside_event(env: str, e: LogEntry, release: Release | None, previous: str) -> Event:
    return Event(
        env=env,
        commit=e.commit,
        action="outside",
        release=release.tag if release else "",
        tag_object=release.tag_object if release else "",
        previous=previous,
        approver=e.author,
        reason=e.subject or "(no message)",
        time=e.date,
        tree=e.tree,
        trailers=e.trailers,
        source="outside",
    )


def _encode_name(n: ReleaseName) -> list:
    v = n.version
    return [n.model, v.major, v.minor, v.patch, list(v.prerelease), list(v.build)]


def _decode_name(x: list) -> ReleaseName:
    model, major, minor, patch, pre, build = x
    if not (isinstance(model, str) and all(type(i) is int for i in (major, minor, patch))
            and all(isinstance(p, str) for p in (*pre, *build))):
        raise TypeError("not a release name")
    return ReleaseName(model, Version(major, minor, patch, tuple(pre), tuple(build)))


def release_from_record(rec: RefRecord, loader=None, deriver=None, index: "RefIndex | None" = None) -> Release | None:
    tag = rec.name[len("refs/tags/"):]
    name = (parse_tag(tag) if index is None
            else index.parsed("release", tag, parse_tag, _encode_name, _decode_name))
    if name is None:
        return None
    return Release(
        name=name,
        tag=tag,
        tag_object=rec.objectname,
        commit=rec.commit,
        tree=rec.tree,
        created_at=rec.creator_date,
        creator=rec.creator,
        annotated=rec.objecttype == "tag",
        message=rec.message if loader is None else None,
        loader=loader,
        deriver=deriver,
    )


class Registry:
    def __init__(self, ws: Workspace, messages: bool = True, cached: bool = False,
                 index: RefIndex | None = None) -> None:
        """messages=False skips the tag messages in the one-pass read; the few manifests a
        command then needs are read one by one (show, history). cached=True (read commands
        only) takes what object ids fix from the ref index (tether.refindex) instead of having
        git peel every tag again; commands that move refs or write files read git afresh."""
        self.ws = ws
        self.index: RefIndex | None = None
        if (cached or index is not None) and not messages:
            from tether.adapters.refindex import RefIndex

            self.index = index or RefIndex(ws.git)
            records = self.index.records(*PATTERNS)  # the same reading as index.snapshot(*PATTERNS)
        else:
            records = ws.git.for_each_ref(*PATTERNS, messages=messages)
        self._messages: dict[str, str] = {}  # tag object -> message, read ahead by read_messages
        loader = None if messages else self._message
        self.releases: dict[str, list[Release]] = {}
        self.heads: dict[str, RefRecord] = {}
        self.remote_heads: dict[str, RefRecord] = {}
        self.tag_records: dict[str, RefRecord] = {}
        self.not_releases: dict[str, str] = {}  # release-named tags on no commit: tag -> finding
        self.adopted: list[str] = []  # models only the release tags' commits declare (_adopt_models)
        for rec in records:
            if rec.name.startswith("refs/tags/"):
                self.tag_records[rec.name[len("refs/tags/"):]] = rec
                rel = release_from_record(rec, loader, self._derive, self.index)
                if rel and not rel.tree:  # git gives a tree only for a commit: a blob, a tree, a tag of a tag
                    what = rec.objecttype if rec.objecttype != "tag" else "tag object whose target is not a commit"
                    self.not_releases[rel.tag] = (
                        f"release-named tag {rel.tag} points at a {what} ({rel.commit[:12]}), not a commit: "
                        "it is no release")
                elif rel:
                    self.releases.setdefault(rel.name.model, []).append(rel)
            elif rec.name.startswith("refs/heads/"):
                self.heads[rec.name[len("refs/heads/"):]] = rec
            elif not rec.name.endswith("/HEAD"):
                self.remote_heads[rec.name[len("refs/remotes/origin/"):]] = rec
        for rels in self.releases.values():
            rels.sort(key=lambda r: r.version._key(), reverse=True)  # one key per release, not per comparison
        if self.releases and _declares_no_model(ws):
            self._adopt_models()
        if self.index is not None:
            self.index.save()
            ws.use_index(self.index, list(self.tag_records))
        # memos, one per question, each typed for what it holds
        self._summary: dict | None = None
        self.unsettled: set[str] = set()  # releases whose summary depends on what the DVC cache holds
        self._env_states: dict[tuple[str, str], EnvState] = {}
        self._histories: dict[tuple[str, str], list[Event]] = {}
        self._gto: list | None = None
        self._ever: dict[tuple[str, str], set[str]] = {}
        self._stages: dict[str, dict[str, str]] = {}
        self._tags: dict[str, Release] | None = None
        self._by_tree: dict[str, dict[str, Release]] = {}
        self._derived: dict[tuple[str, str], object] = {}
        self._reader: Callable[[str], bytes | None] | None = None

    def _adopt_models(self) -> None:
        """HEAD's dvc.yaml declares no model (a branch that predates it), yet release tags exist:
        releases are tags, so take each tagged model as its newest release's own commit declares
        it (one `git cat-file` for all), and the workspace answers for those models."""
        from tether.core import dvcgraph
        from tether.adapters.gitrepo import cat_files
        from tether.core.settings import load_yaml

        specs = [f"{r.commit}:dvc.yaml" for rels in self.releases.values() for r in rels]
        blobs = cat_files(self.ws.git, list(dict.fromkeys(specs)))
        found: dict[str, dvcgraph.Artifact] = {}
        for model, rels in self.releases.items():
            for r in rels:  # newest first
                raw = blobs.get(f"{r.commit}:dvc.yaml")
                try:
                    art = dvcgraph.models(load_yaml(raw.decode()) or {}).get(model) if raw else None
                except Exception:  # noqa: BLE001 - a broken dvc.yaml declares nothing
                    art = None
                if art is not None:
                    found[model] = art
                    break
        if found:
            self.ws.models = found  # Workspace.models is a cached_property: the read's answer
            self.adopted = sorted(found)

    def _message(self, tag_object: str) -> str:
        hit = self._messages.get(tag_object)
        return hit if hit is not None else self.ws.git.tag_message(tag_object)

    def read_messages(self, model: str) -> None:
        """Read ahead, in one process, the messages of `model`'s annotated release tags whose
        summaries are not cached (a cold `list` needs them all, one `git cat-file` each is slow)."""
        cache = self._summary_cache()
        want = [r.tag_object for r in self.of(model) if r.annotated and r.tag_object not in self._messages
                and not (isinstance(h := cache.get(r.tag_object), dict) and h.get("commit") == r.commit)]
        self._messages.update(self.ws.git.tag_messages(want))

    @property
    def settled(self) -> bool:
        """Nothing read so far depends on what the local DVC cache holds: every derivation
        and summary was complete, so the same refs will always give the same answers."""
        return not self.unsettled and all(not getattr(d, "unresolved", None) for d in self._derived.values())

    # -- derivation -----------------------------------------------------------------------
    def _derive(self, rel: Release):
        """rel's derivation: from the per-commit cache when it is there (show, history read one
        or two), else derived together with every other release of the model not cached yet,
        in one batch (list needs them all; a batch costs a fixed number of git processes)."""
        from tether.registry import derive

        key = (rel.commit, rel.name.model)
        if key not in self._derived:
            cached = derive.load_cached(self.ws.git, *key)
            if cached is not None:
                self._derived[key] = cached
                return cached
            if self._reader is None:
                from tether.adapters.dvcstore import DvcStore

                self._reader = derive.cache_reader(DvcStore(self.ws.root).cache_path("00" * 16).parent.parent)
            batch = [k for k in ((r.commit, r.name.model) for r in self.of(rel.name.model))
                     if k not in self._derived and not derive.is_cached(self.ws.git, *k)]
            self._derived.update(derive.derive_many(self.ws.git, batch + [key], self._reader))
        return self._derived[key]

    def resolve_objects(self, rels: list[Release], store) -> list[Release]:
        """Fetch the small DVC objects (threshold, metrics, listings) the derivation of these
        releases could not read from the local cache, then derive them again. Returns the
        refreshed releases (same tags)."""
        from tether.registry import derive

        md5s = sorted({m for r in rels for m in r.unresolved})
        if not md5s:
            return rels
        absent = store.missing_on_remote(md5s)
        present = [m for m in md5s if m not in absent]
        if present:
            store.fetch(present)
        keys = [(r.commit, r.name.model) for r in rels]
        for k in keys:
            self._derived.pop(k, None)
        self._derived.update(derive.derive_many(self.ws.git, keys, self._reader or derive.cache_reader(
            store.cache_path("00" * 16).parent.parent)))
        out = []
        for r in rels:
            fresh = dataclasses.replace(r)
            out.append(fresh)
            lst = self.releases[r.name.model]
            lst[lst.index(r)] = fresh
        self._tags = None  # by_tag must find the fresh copies
        return out

    # -- releases -------------------------------------------------------------------------
    def of(self, model: str) -> list[Release]:
        return self.releases.get(model, [])

    def by_tag(self, tag: str) -> Release | None:
        if self._tags is None:
            self._tags = {r.tag: r for rels in self.releases.values() for r in rels}
        return self._tags.get(tag)

    def latest(self, model: str, complete_only: bool = True) -> Release | None:
        for r in self.of(model):
            if not r.version.prerelease and (r.problem is None or not complete_only):
                return r
        return next((r for r in self.of(model) if r.problem is None or not complete_only), None)

    def release_for_tree(self, model: str, tree: str, commit: str | None = None) -> Release | None:
        """The release whose tree an environment commit carries: the one tagged on that very
        commit if any, else the newest release with that tree."""
        if model not in self._by_tree:
            idx: dict[str, Release] = {}
            for r in reversed(self.of(model)):  # oldest first, so the newest wins
                idx[r.tree] = r
            self._by_tree[model] = idx
        if commit:
            exact = next((r for r in self.of(model) if r.commit == commit), None)
            if exact:
                return exact
        return self._by_tree[model].get(tree)

    # -- summaries: what `list` prints, cached by tag object ------------------------------
    def _summary_cache(self) -> dict:
        from tether.registry import derive

        if self._summary is None:
            path = derive.cache_dir(self.ws.git).parent / "summary.json"
            try:
                raw = json.loads(path.read_text())
                # v2: summaries of derivations from verified objects only (derive.DERIVE_VERSION 2)
                data = raw.get("entries", {}) if raw.get("v") == 2 else {}
            except (OSError, ValueError, AttributeError):
                data = {}
            self._summary = data if isinstance(data, dict) else {}
        return self._summary

    def summary_cached(self, model: str) -> bool:
        cache = self._summary_cache()
        return all(isinstance(h := cache.get(r.tag_object), dict) and h.get("commit") == r.commit
                   and h.get("tag") == r.tag for r in self.of(model))

    def summaries(self, model: str) -> dict[str, dict]:
        """{tag: {complete, problem, kind, metrics}} for every release of `model`. Keyed in a
        cache by the tag's object id (the commit for a lightweight tag), which fixes both the
        message and the commit, so an entry can never describe another tag; only summaries of
        fully derived releases are stored. A warm `list` reads one file instead of parsing
        every manifest."""
        from tether.registry import derive

        path = derive.cache_dir(self.ws.git).parent / "summary.json"
        cache = self._summary_cache()
        out, fresh = {}, {}
        for rel in self.of(model):
            hit = cache.get(rel.tag_object)
            if isinstance(hit, dict) and hit.get("commit") == rel.commit and hit.get("tag") == rel.tag:
                out[rel.tag] = hit
                continue
            entry = {"tag": rel.tag, "commit": rel.commit, "complete": rel.problem is None,
                     "problem": rel.problem, "kind": rel.problem_kind,
                     "metrics": (rel.manifest or {}).get("metrics") or {}}
            out[rel.tag] = entry
            if not rel.unresolved:
                fresh[rel.tag_object] = entry
            else:
                self.unsettled.add(rel.tag)  # may read differently once its objects are fetched
        if fresh:
            cache.update(fresh)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps({"v": 2, "entries": cache}))
                os.replace(tmp, path)
            except OSError:
                pass
        return out

    # -- environments ---------------------------------------------------------------------
    def env_state(self, model: str, env: str) -> EnvState:
        key = (model, env)
        if key not in self._env_states:
            branch = self.ws.branch(model, env)
            local = self.heads.get(branch)
            remote = self.remote_heads.get(branch)
            lc, rc = (local.commit if local else None), (remote.commit if remote else None)
            relation: Relation
            if lc is None and rc is None:
                relation = "absent"
            elif rc is None:
                relation = "local-only"
            elif lc is None:
                relation = "remote-only"
            elif lc == rc:
                relation = "same"
            elif self.ws.git.is_ancestor(lc, rc):
                relation = "behind"
            elif self.ws.git.is_ancestor(rc, lc):
                relation = "ahead"
            else:
                relation = "diverged"
            self._env_states[key] = EnvState(model, env, branch, lc, rc, relation)
        return self._env_states[key]

    def env_head(self, model: str, env: str) -> str | None:
        return self.env_state(model, env).commit

    def history(self, model: str, env: str) -> list[Event]:
        """Newest first: the environment's audit trail. Where its branch exists, the branch is
        the truth: its first-parent log, after GTO's assignment tags from before the branch's
        first move (a team that ran `gto assign` before tether); a GTO tag made later never
        changes what the environment runs (see gto_disagreement). Where no branch exists, GTO's
        assignment tags alone, and under a signing policy for the environment only the tags
        whose signature it accepts."""
        key = (model, env)
        if key not in self._histories:
            state = self.env_state(model, env)
            head = state.commit
            branch = self.events_at(env, head, model, state.branch) if head else []
            written = {ev.trailers.get("Tether-Gto-Tag") for ev in branch}
            foreign = [g for g in self.gto_events(model, env) if g.trailers.get("Gto-Tag") not in written]
            if branch:
                first = _epoch(branch[-1].time)
                foreign = _chain([g for g in foreign if _epoch(g.time) <= first])
            else:
                foreign = self._trusted_gto(model, env, foreign)
            self._histories[key] = _merge_newest_first(branch, foreign)
        return self._histories[key]

    def _trusted_gto(self, model: str, env: str, events: list[Event]) -> list[Event]:
        """GTO's tags of an environment that has no branch, less those the signing policy's rule
        for the environment refuses (an unsigned tag, a signer it does not allow). Verdicts
        depend on key material outside git, so such an answer is never kept (unsettled)."""
        if not events:
            return events
        from tether.registry import signing
        from tether.core import signpolicy as sp

        rule = signing.policy(self.ws, model).env(env)
        if not (rule.require_signed or rule.principals):
            return events
        self.unsettled.add(f"gto-signatures:{model}:{env}")
        signers = signing.allowed_signers(self.ws)
        kept = [e for e in events
                if sp.judge(signing.tag_signature(self.ws.git, e.tag_object, True, signers), rule) is None]
        return _chain(kept)

    def gto_disagreement(self, model: str, env: str) -> dict | None:
        """Where the environment's branch exists and GTO's tags (read as `gto show` reads them)
        put another release in the stage, or none: {"tag": the stage's newest GTO tag, "gto":
        the release GTO names ("" for none, else a tag or a commit id), "branch": the branch's
        release}. None when they agree, when there is no branch or no GTO tag for the stage."""
        state = self.env_state(model, env)
        if state.commit is None:
            return None
        from tether.core import gto

        recs = [r for r in self.gto_records() if r.tag.model == model]
        staged = [r for r in recs if r.tag.stage == env and r.tag.action in ("assign", "unassign")]
        if not staged:
            return None
        newest = max(staged, key=lambda r: (r.time, r.tag.name)).tag.name
        live = self.live_release(model, env)
        rel = self.by_tag(live) if live else None
        try:
            holder = gto.stage_holders(recs, model).get(env)
        except ValueError as exc:
            return {"tag": newest, "gto": "", "branch": live or "", "problem": str(exc)}
        if (holder[1] if holder else None) == (rel.commit if rel else None):
            return None
        said = ""
        if holder is not None:
            at = next((r for r in self.of(model) if r.commit == holder[1]), None)
            said = at.tag if at is not None else holder[1]
        return {"tag": newest, "gto": said, "branch": live or "", "problem": None}

    def gto_records(self) -> list:
        """Every annotated GTO tag (lightweight ones do not count for GTO either)."""
        if self._gto is None:
            from tether.core import gto

            recs = []
            for name, rec in self.tag_records.items():
                if rec.objecttype != "tag":
                    continue
                t = gto.parse_gto_tag(name) if self.index is None else self.index.parsed(
                    "gto", name, gto.parse_gto_tag, gto.encode_tag, gto.decode_tag)
                if t is not None:
                    recs.append(gto.TagRecord(t, rec.commit, _epoch(rec.creator_date)))
            self._gto = recs
            if self.index is not None:
                self.index.save()
        return self._gto

    def gto_events(self, model: str, env: str) -> list[Event]:
        """GTO's assignment and unassignment tags of `model` for stage `env`, newest first,
        each mapped (as GTO maps it) to the release registered at the commit it points at."""
        out = []
        at: dict[str, Release] = {}
        for x in reversed(self.of(model)):  # the first (newest) release at a commit wins, as before
            at[x.commit] = x
        for r in self.gto_records():
            t = r.tag
            if t.model != model or t.stage != env or t.action not in ("assign", "unassign"):
                continue
            rec = self.tag_records[t.name]
            rel = at.get(r.commit)
            out.append(Event(
                env=env, commit=r.commit, action=t.action,
                release=rel.tag if (rel and t.action == "assign") else "",
                tag_object=rec.objectname, previous="", approver=rec.creator,
                reason=(rec.message or "").strip().splitlines()[0] if rec.message else t.name,
                time=rec.creator_date, tree=rel.tree if rel else "", trailers={"Gto-Tag": t.name},
                source="gto"))
        out.sort(key=lambda e: _epoch(e.time), reverse=True)
        prev = "none"
        for i in range(len(out) - 1, -1, -1):
            out[i] = dataclasses.replace(out[i], previous=prev)
            prev = out[i].release or "none"
        return out

    def events_at(self, env: str, commit: str, model: str, branch: str | None = None) -> list[Event]:
        """Every move down the first-parent chain to the first move tether made: commits
        without tether's trailers above it are moves made outside tether (a hand commit, a
        merge), never the end of history. A branch tether never moved is one outside move."""
        if self.index is not None and branch:
            entries = self.index.first_parent_log(branch, commit)
        else:
            entries = self.ws.git.log_first_parent(commit)
        parsed = [parse_event(env, e) for e in entries]
        oldest = max((i for i, ev in enumerate(parsed) if ev is not None), default=-1)
        if oldest < 0:
            entries, parsed = entries[:1], [None]
        else:
            entries, parsed = entries[: oldest + 1], parsed[: oldest + 1]
        events: list[Event] = [None] * len(entries)  # type: ignore[list-item]
        previous = "none"
        for i in range(len(entries) - 1, -1, -1):  # oldest first, so `previous` is known
            ev = parsed[i]
            if ev is None:
                rel = self.release_for_tree(model, entries[i].tree, entries[i].commit)
                ev = outside_event(env, entries[i], rel, previous)
            events[i] = ev
            previous = ev.release or "none"
        return events

    def live(self, model: str, env: str) -> Event | None:
        hist = self.history(model, env)
        return hist[0] if hist else None

    def live_release(self, model: str, env: str) -> str | None:
        ev = self.live(model, env)
        return ev.release if ev and ev.release and ev.action != "unassign" else None

    def stage(self, rel: Release) -> str:
        """Derived, never stored: production/staging (live there), archived (was live once),
        registered."""
        return self.stages(rel.name.model).get(rel.tag, "registered")

    def stages(self, model: str) -> dict[str, str]:
        """{tag: stage} for every release of `model`, from one reading of each environment."""
        if model not in self._stages:
            envs = self.ws.environments(model)
            live = {env: self.live_release(model, env) for env in envs}
            ever = set().union(*(self._ever_live(model, env) for env in envs)) if envs else set()
            out = {}
            for rel in self.of(model):
                live_in = [env for env in envs if live[env] == rel.tag]
                out[rel.tag] = ",".join(live_in) if live_in else ("archived" if rel.tag in ever else "registered")
            self._stages[model] = out
        return self._stages[model]

    def _ever_live(self, model: str, env: str) -> set[str]:
        key = (model, env)
        if key not in self._ever:
            self._ever[key] = {ev.release for ev in self.history(model, env) if ev.release}
        return self._ever[key]

    def check_tag_integrity(self, events: list[Event]) -> None:
        """A tag that moved or was re-created after it went live is an integrity failure."""
        for ev in events:
            if ev.source != "tether":
                continue  # derived from the tags as they are now: nothing recorded to compare
            rel = self.by_tag(ev.release)
            if rel is None:
                raise IntegrityError(
                    f"{ev.release}, live in {ev.env} at {ev.commit[:12]}, no longer exists as a tag",
                    hint=f"restore the tag: git tag -a {ev.release} … must point at tag object {ev.tag_object[:12]}",
                )
            if ev.tag_object and rel.tag_object != ev.tag_object:
                raise IntegrityError(
                    f"tag {ev.release} was moved or re-created after it was {ev.action}d to {ev.env} "
                    f"(recorded tag object {ev.tag_object[:12]}, now {rel.tag_object[:12]})",
                    hint="releases never change: restore the original tag from a clone or the remote",
                )

    # -- REF resolution -------------------------------------------------------------------
    def resolve(self, ref: RefArg, model: str | None = None) -> Release:
        if ref.env:
            model = self.ws.model(model)
            ev = self.live(model, ref.env)
            if ev is None:
                raise NotFound(f"environment '{ref.env}' of {model} has no release yet",
                               hint=f"promote one: tether promote {model}@vX.Y.Z --env {ref.env} …")
            if ev.action == "unassign":
                raise NotFound(f"environment '{ref.env}' of {model} holds no release: GTO unassigned it ({ev.trailers.get('Gto-Tag')})",
                               hint=f"promote one: tether promote {model}@vX.Y.Z --env {ref.env} …")
            if not ev.release:
                raise IntegrityError(
                    f"{ref.env}'s head {ev.commit[:12]} ({ev.reason}, by {ev.approver}) was committed outside "
                    "tether and its tree matches no release",
                    hint=f"move it to a release: tether promote {model}@vX.Y.Z --env {ref.env} …, "
                         f"or tether rollback --env {ref.env}")
            rel = self.by_tag(ev.release)
            if rel is None:
                raise IntegrityError(f"{ev.release}, live in {ref.env}, no longer exists as a tag")
            return rel
        model = self.ws.model(ref.model or model)
        if ref.latest:
            rel = self.latest(model)
            if rel is None:
                raise NotFound(f"{model} has no releases yet", hint=f"make one: tether release {model}")
            return rel
        if ref.version is None:
            raise UsageError("a REF needs a version, @latest, or an environment name")
        wanted = f"{model}@v{ref.version}"
        exact = [r for r in self.of(model) if r.tag == wanted]
        if exact:
            return exact[0]
        same = [r for r in self.of(model) if r.version == ref.version]
        if not ref.version.build and len(same) == 1:
            return same[0]  # v1.0.2 names v1.0.2+hotfix when that is the only 1.0.2
        if same:
            raise NotFound(f"no release {wanted}; build metadata is part of the name",
                           hint="name one exactly: " + ", ".join(r.tag for r in same))
        raise NotFound(f"no release {model}@v{ref.version}", hint=f"see `tether list {model}`")


def _declares_no_model(ws: Workspace) -> bool:
    """HEAD's dvc.yaml is there and declares no model (not: it is missing or unreadable, which
    the command that needs it reports)."""
    try:
        return not ws.models
    except Exception:  # noqa: BLE001 - no dvc.yaml, or a broken one: nothing to adopt here
        return False


def _epoch(iso: str) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except (ValueError, AttributeError):
        return 0


def _chain(events: list[Event]) -> list[Event]:
    """GTO events (newest first) with each `previous` set from the one before it."""
    prev, out = "none", list(events)
    for i in range(len(out) - 1, -1, -1):
        out[i] = dataclasses.replace(out[i], previous=prev)
        prev = out[i].release or "none"
    return out


def _merge_newest_first(branch: list[Event], foreign: list[Event]) -> list[Event]:
    if not foreign:
        return branch
    out, i, j = [], 0, 0
    while i < len(branch) or j < len(foreign):
        if j >= len(foreign) or (i < len(branch) and _epoch(branch[i].time) >= _epoch(foreign[j].time)):
            out.append(branch[i])
            i += 1
        else:
            out.append(foreign[j])
            j += 1
    return out
