"""The registry, read in one pass: one `git for-each-ref` over release tags and environment
branches, plus one first-parent `git log` per environment that has moved. Never ordered by
timestamps: releases sort by SemVer, environment events by their position in history.

A release itself (its derived manifest and verdict) is tether.registry.release; an environment's
branch, tether.registry.envstate; its moves and GTO's tags read as events, tether.registry.events;
the summaries `list` prints, tether.registry.summary."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from tether.core import moves
from tether.errors import IntegrityError, NotFound, UsageError
from tether.adapters.gitrepo import RefRecord
from tether.adapters.refindex import PATTERNS
from tether.core.refs import RefArg
from tether.core.moves import Event
from tether.adapters.workspace import Workspace
from tether.registry.envstate import EnvState, relation_of
from tether.clock import epoch
from tether.registry.events import (branch_events, chain, check_tag_integrity, gto_stage_events,
                                    gto_tag_records, merge_newest_first, newest_stage_tag, stage_disagreement)
from tether.registry.release import Release, declared_models, declares_no_model, release_from_record
from tether.registry.summary import SummaryCache, summary_of

if TYPE_CHECKING:
    from tether.core import gto
    from tether.registry import derive
    from tether.adapters.refindex import RefIndex


class Registry:
    """Every release and environment of the repository, read in one pass; each question asked
    of it is answered once (the memos declared in __init__)."""

    def __init__(self, ws: Workspace, messages: bool = True, cached: bool = False, index: RefIndex | None = None,
                 message_of: str | None = None) -> None:
        """messages=False skips the tag messages in the one-pass read (but `message_of`'s, a refname); the few manifests
        a command then needs are read one by one (show, history). cached=True (read commands only) takes what object
        ids fix from the ref index (tether.adapters.refindex) instead of having git peel every tag again; commands that
        move refs or write files read git afresh."""
        self.ws = ws
        self.index: RefIndex | None = None
        # the one-pass read (_read)
        self.releases: dict[str, list[Release]] = {}  # model -> its releases, newest SemVer first
        self.heads: dict[str, RefRecord] = {}
        self.remote_heads: dict[str, RefRecord] = {}
        self.tag_records: dict[str, RefRecord] = {}
        self.not_releases: dict[str, str] = {}  # release-named tags on no commit: tag -> finding
        self.adopted: list[str] = []  # models only the release tags' commits declare (_adopt_models)
        self.unsettled: set[str] = set()  # releases whose summary depends on what the DVC cache holds
        # memos, one per question, each typed for what it holds
        self._messages: dict[str, str] = {}  # tag object -> message, read ahead by read_messages
        self._summary = SummaryCache(ws.git)
        self._env_states: dict[tuple[str, str], EnvState] = {}
        self._histories: dict[tuple[str, str], list[Event]] = {}
        self._gto: list[gto.TagRecord] | None = None
        self._ever: dict[tuple[str, str], set[str]] = {}
        self._stages: dict[str, dict[str, str]] = {}
        self._tags: dict[str, Release] | None = None
        self._by_tree: dict[str, dict[str, Release]] = {}
        self._derived: dict[tuple[str, str], derive.Derived] = {}
        self._reader: Callable[[str], bytes | None] | None = None
        if (cached or index is not None) and not messages:
            from tether.adapters.refindex import RefIndex

            self.index = index or RefIndex(ws.git)
            records = self.index.records(*PATTERNS)  # the same reading as index.snapshot(*PATTERNS)
        else:
            records = ws.git.for_each_ref(*PATTERNS, messages=messages, message_of=message_of)
        self._read(records, None if messages else self._message)
        if self.releases and declares_no_model(ws):
            self._adopt_models()
        if self.index is not None:
            self.index.save()
            ws.use_index(self.index, list(self.tag_records))

    def _read(self, records: list[RefRecord], loader: Callable[[str], str] | None) -> None:
        """Sort the one pass's records into releases (newest SemVer first per model), tags that
        are no release, local and origin's branches."""
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
            rels.sort(key=lambda r: r.version.sort_key(), reverse=True)  # one key per release, not per comparison

    def _adopt_models(self) -> None:
        """HEAD's dvc.yaml declares no model (a branch that predates it), yet release tags exist:
        releases are tags, so take each tagged model as its newest release's own commit declares
        it (one `git cat-file` for all), and the workspace answers for those models."""
        found = declared_models(self.ws.git, self.releases)
        if found:
            self.ws.models = found  # Workspace.models is a cached_property: the read's answer
            self.adopted = sorted(found)

    def _message(self, tag_object: str) -> str:
        hit = self._messages.get(tag_object)
        return hit if hit is not None else self.ws.git.tag_message(tag_object)

    def read_messages(self, model: str) -> None:
        """Read ahead, in one process, the messages of `model`'s annotated release tags whose
        summaries are not cached (a cold `list` needs them all, one `git cat-file` each is slow)."""
        want = [r.tag_object for r in self.of(model) if r.annotated and r.tag_object not in self._messages
                and self._summary.hit(r, same_tag=False) is None]
        self._messages.update(self.ws.git.tag_messages(want))

    @property
    def settled(self) -> bool:
        """Nothing read so far depends on what the local DVC cache holds: every derivation
        and summary was complete, so the same refs will always give the same answers."""
        return not self.unsettled and all(not getattr(d, "unresolved", None) for d in self._derived.values())

    # -- derivation -----------------------------------------------------------------------
    def _derive(self, rel: Release) -> derive.Derived:
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

                self._reader = derive.cache_reader(DvcStore(self.ws.root).cache_root())
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
            store.cache_root())))
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

    # -- summaries: what `list` prints, cached by tag object (tether.registry.summary) --------
    def summary_cached(self, model: str) -> bool:
        return all(self._summary.hit(r) is not None for r in self.of(model))

    def summaries(self, model: str) -> dict[str, dict]:
        """{tag: {complete, problem, kind, metrics}} for every release of `model`. Keyed in a
        cache by the tag's object id (the commit for a lightweight tag), which fixes both the
        message and the commit, so an entry can never describe another tag; only summaries of
        fully derived releases are stored. A warm `list` reads one file instead of parsing
        every manifest."""
        out, fresh = {}, {}
        for rel in self.of(model):
            hit = self._summary.hit(rel)
            if hit is not None:
                out[rel.tag] = hit
                continue
            entry = summary_of(rel)
            out[rel.tag] = entry
            if not rel.unresolved:
                fresh[rel.tag_object] = entry
            else:
                self.unsettled.add(rel.tag)  # may read differently once its objects are fetched
        self._summary.add(fresh)
        return out

    # -- environments ---------------------------------------------------------------------
    def env_state(self, model: str, env: str) -> EnvState:
        key = (model, env)
        if key not in self._env_states:
            branch = self.ws.branch(model, env)
            local = self.heads.get(branch)
            remote = self.remote_heads.get(branch)
            lc, rc = (local.commit if local else None), (remote.commit if remote else None)
            self._env_states[key] = EnvState(model, env, branch, lc, rc, relation_of(self.ws.git, lc, rc))
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
            written = {ev.trailers.get(moves.GTO_TAG) for ev in branch}
            foreign = [g for g in self.gto_events(model, env) if g.trailers.get("Gto-Tag") not in written]
            if branch:
                first = epoch(branch[-1].time)
                foreign = chain([g for g in foreign if epoch(g.time) <= first])
            else:
                foreign = self._trusted_gto(model, env, foreign)
            self._histories[key] = merge_newest_first(branch, foreign)
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
        return chain(kept)

    def gto_disagreement(self, model: str, env: str) -> dict | None:
        """Where the environment's branch exists and GTO's tags (read as `gto show` reads them)
        put another release in the stage, or none: {"tag": the stage's newest GTO tag, "gto":
        the release GTO names ("" for none, else a tag or a commit id), "branch": the branch's
        release}. None when they agree, when there is no branch or no GTO tag for the stage."""
        if self.env_state(model, env).commit is None:
            return None
        recs = [r for r in self.gto_records() if r.tag.model == model]
        newest = newest_stage_tag(recs, env)
        if newest is None:
            return None
        live = self.live_release(model, env)
        return stage_disagreement(recs, model, env, newest, live or "", self.by_tag(live) if live else None,
                                  self.of(model))

    def gto_records(self) -> list[gto.TagRecord]:
        """Every annotated GTO tag (lightweight ones do not count for GTO either)."""
        if self._gto is None:
            self._gto = gto_tag_records(self.tag_records, self.index)
            if self.index is not None:
                self.index.save()
        return self._gto

    def gto_events(self, model: str, env: str) -> list[Event]:
        """GTO's assignment and unassignment tags of `model` for stage `env`, newest first,
        each mapped (as GTO maps it) to the release registered at the commit it points at."""
        return gto_stage_events(self.gto_records(), self.tag_records, self.of(model), model, env)

    def events_at(self, env: str, commit: str, model: str, branch: str | None = None, entries=None) -> list[Event]:
        """Every move down the first-parent chain to the first move tether made: commits without tether's trailers
        above it are moves made outside tether (a hand commit, a merge), never the end of history. A branch tether
        never moved is one outside move. `entries`: `commit`'s first-parent log, when the caller read it already."""
        if self.index is not None and branch:
            entries = self.index.first_parent_log(branch, commit)
        elif entries is None:
            entries = self.ws.git.log_first_parent(commit)
        return branch_events(env, entries, lambda e: self.release_for_tree(model, e.tree, e.commit))

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
        check_tag_integrity(events, self.by_tag)

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
        from tether.core.suggest import hint  # "did you mean …?"
        raise NotFound(f"no release {wanted}", hint=hint(wanted, [r.tag for r in self.of(model)], f"see `tether list {model}`"))

