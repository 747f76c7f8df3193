"""The registry, read in one pass: one `git for-each-ref` over release tags and environment
branches, plus one first-parent `git log` per environment that has moved. Never ordered by
timestamps: releases sort by SemVer, environment events by their position in history."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from tether import manifest as mf
from tether.errors import IntegrityError, NotFound, UsageError
from tether.gitrepo import LogEntry, RefRecord
from tether.refs import RefArg, ReleaseName, parse_tag
from tether.workspace import Workspace

ACTIONS = ("promote", "rollback")


@dataclass(frozen=True)
class Release:
    """A release tag. Its manifest is parsed on first use: `list` needs every one, `show` and
    `history` one or none, and 1,000 JSON documents are most of a cold `list`."""

    name: ReleaseName
    tag: str
    tag_object: str
    commit: str
    tree: str
    created_at: str
    creator: str
    annotated: bool
    message: str | None  # None: not read yet (see Registry(messages=False))
    loader: object = field(default=None, repr=False, compare=False)

    @property
    def version(self):
        return self.name.version

    @cached_property
    def _parsed(self) -> tuple[dict | None, str | None]:
        if not self.annotated:
            return None, "a lightweight tag: releases are annotated tags carrying a manifest"
        message = self.message if self.message is not None else self.loader(self.tag_object)
        try:
            manifest = mf.loads(message)
        except mf.ManifestError as exc:
            return None, f"no tether manifest ({exc}); made by hand with git tag?"
        if manifest["model"] != self.name.model or manifest["version"] != str(self.name.version):
            return None, f"its manifest describes {manifest['model']}@v{manifest['version']}"
        if manifest["commit"] != self.commit:
            return None, "it points at a different commit than its manifest records"
        return manifest, None

    @property
    def manifest(self) -> dict | None:
        return self._parsed[0]

    @property
    def problem(self) -> str | None:
        return self._parsed[1]


@dataclass(frozen=True)
class Event:
    """One move of an environment: a commit on its branch, newest first in history."""

    env: str
    commit: str
    action: str
    release: str  # tag name
    tag_object: str
    previous: str  # previous tag name, or "none"
    approver: str
    reason: str
    time: str
    tree: str
    trailers: dict = field(default_factory=dict)


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


def release_from_record(rec: RefRecord, loader=None) -> Release | None:
    name = parse_tag(rec.name[len("refs/tags/"):])
    if name is None:
        return None
    return Release(
        name=name,
        tag=rec.name[len("refs/tags/"):],
        tag_object=rec.objectname,
        commit=rec.commit,
        tree=rec.tree,
        created_at=rec.creator_date,
        creator=rec.creator,
        annotated=rec.objecttype == "tag",
        message=rec.message if loader is None else None,
        loader=loader,
    )


class Registry:
    def __init__(self, ws: Workspace, messages: bool = True) -> None:
        """messages=False skips the tag messages in the one-pass read; the few manifests a
        command then needs are read one by one (show, history)."""
        self.ws = ws
        records = ws.git.for_each_ref("refs/tags/", "refs/heads/", messages=messages)
        loader = None if messages else ws.git.tag_message
        self.releases: dict[str, list[Release]] = {}
        self.heads: dict[str, RefRecord] = {}
        for rec in records:
            if rec.name.startswith("refs/tags/"):
                rel = release_from_record(rec, loader)
                if rel:
                    self.releases.setdefault(rel.name.model, []).append(rel)
            else:
                self.heads[rec.name[len("refs/heads/"):]] = rec
        for rels in self.releases.values():
            rels.sort(key=lambda r: r.version, reverse=True)
        self._history: dict[tuple, object] = {}

    # -- releases -------------------------------------------------------------------------
    def of(self, model: str) -> list[Release]:
        return self.releases.get(model, [])

    def by_tag(self, tag: str) -> Release | None:
        name = parse_tag(tag)
        if not name:
            return None
        return next((r for r in self.of(name.model) if r.tag == tag), None)

    def latest(self, model: str, complete_only: bool = True) -> Release | None:
        for r in self.of(model):
            if not r.version.prerelease and (r.problem is None or not complete_only):
                return r
        return next((r for r in self.of(model) if r.problem is None or not complete_only), None)

    # -- environments ---------------------------------------------------------------------
    def env_head(self, model: str, env: str) -> RefRecord | None:
        return self.heads.get(self.ws.branch(model, env))

    def history(self, model: str, env: str) -> list[Event]:
        """Newest first: the environment's audit trail from its first-parent log."""
        key = (model, env)
        if key not in self._history:
            head = self.env_head(model, env)
            self._history[key] = self.events_at(env, head.commit) if head else []
        return self._history[key]

    def events_at(self, env: str, commit: str) -> list[Event]:
        events: list[Event] = []
        for entry in self.ws.git.log_first_parent(commit):
            ev = parse_event(env, entry)
            if ev is None:
                break  # below the first move lies ordinary project history
            events.append(ev)
        return events

    def live(self, model: str, env: str) -> Event | None:
        hist = self.history(model, env)
        return hist[0] if hist else None

    def stage(self, rel: Release) -> str:
        """Derived, never stored: production/staging (live there), archived (was live once),
        registered."""
        model = rel.name.model
        envs = self.ws.settings(model).environments
        live_in = [env for env in envs if (ev := self.live(model, env)) and ev.release == rel.tag]
        if live_in:
            return ",".join(live_in)
        if any(rel.tag in self._ever_live(model, env) for env in envs):
            return "archived"
        return "registered"

    def _ever_live(self, model: str, env: str) -> set[str]:
        key = ("ever", model, env)
        if key not in self._history:
            self._history[key] = {ev.release for ev in self.history(model, env)}
        return self._history[key]

    def check_tag_integrity(self, events: list[Event]) -> None:
        """A tag that moved or was re-created after it went live is an integrity failure."""
        for ev in events:
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
                               hint=f"promote one: tether promote {model}@vX.Y.Z --to {ref.env} …")
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
        for rel in self.of(model):
            if rel.version == ref.version:
                return rel
        raise NotFound(f"no release {model}@v{ref.version}", hint=f"see `tether list {model}`")
