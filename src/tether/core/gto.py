"""GTO's Git-tag protocol, so tether and `gto show` / `gto history` agree. Pure; stdlib only.

Everything here mirrors iterative/gto 1.10.1 (``gto/constants.py``, ``gto/tag.py``,
``gto/base.py``, ``gto/registry.py``, ``gto/api.py``); the rules, in short:

Grammar (``gto/constants.py: tag_re``), the artifact part spelled with ``=`` where the
user-facing name has ``:`` (``name_to_tag``)::

    <artifact>@v<semver>[#N]        register          (gto register: no #N, --simple defaults to true)
    <artifact>@v<semver>![#N]       deregister
    <artifact>#<stage>[#N]          assign            (gto assign: #N by default; --simple true: none)
    <artifact>#<stage>![#N]         unassign
    <artifact>@deprecated[#N]       deprecate         (gto deprecate: no #N unless --force)
    <artifact>@created[#N]          matched by tag_re, but parse_name gives it no action and every
                                    `gto show`/`gto history` then crashes with KeyError 'action';
                                    parse_gto_tag returns None for it and tether must never write one.

So the plain release tags tether writes (``model@vX.Y.Z``) ARE GTO registrations: parse_gto_tag
returns them with ``action="register"`` (and ``number=None``).  Only *annotated* tags count:
GTO skips lightweight tags when it builds its state (``tag.find``), though it does count them
when numbering (``name_tag`` uses ``scm.list_tags()``).

Numbering (``gto/tag.py: name_tag``): N = 1 + the highest #N on any tag of the same artifact,
whatever its action or stage (per artifact, not per stage; un-numbered tags count as 0).

Messages (``gto/registry.py``): see the ``*_message`` helpers.  The message is cosmetic: GTO
stores it (``.strip()``-ed) and shows it in ``gto history --json``, but never reads a version
or stage out of it.

Version mapping (``gto/tag.py: index_tag``): an assignment/unassignment tag belongs to the version
*registered at the commit the tag object points at* (``GitTag.target``: the tag's direct target,
not peeled further, so point tags at commits, never at other tags).  GTO indexes all
(de)registration tags before any stage tag, so tag order does not matter for the mapping.  If no
version of that artifact is registered at the commit, GTO invents an unregistered version named
by the full 40-hex commit sha; if two are, `gto show` fails (ManyVersions).

Ordering: see :func:`stage_state`.  In short, the stage belongs to the version whose latest
assignment tag has the latest *tagger date* (one-second resolution); the #N counter plays no
part.  A rollback tag therefore needs a tagger date strictly later than every earlier GTO tag of
the model (:func:`assignment_time`); with `git tag` set ``GIT_COMMITTER_DATE="<epoch> +0000"``.
(Do not run the gto CLI with GIT_COMMITTER_DATE set: its pygit2 backend refuses the override and
the dulwich fallback either fails ("Failed to create tag") or ignores it.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# --- GTO's grammar, copied verbatim from gto/constants.py (gto 1.10.1) ----------------------
# A name (artifact name, stage, type): letters of either case, digits, '-', '/', '_'; starts
# and ends with a letter or digit; one character is enough.  Uppercase IS allowed, '.' is NOT.
# (gto/constants.py: `name`, used by `name_re` / `assert_name_is_valid` / config.assert_stage.)
GTO_NAME = r"[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?"
# An artifact's full name may carry a folder prefix, "dir:name" (gto/constants.py: `dirname`,
# `fullname`); in tag names the ':' is written '=' (SEPARATOR_IN_TAG).
GTO_DIRNAME = r"[a-zA-Z0-9-_./]+"
SEPARATOR_IN_NAME = ":"
SEPARATOR_IN_TAG = "="
GTO_SEMVER = (
    r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
GTO_FULLNAME = f"(?P<dirname>{GTO_DIRNAME}{SEPARATOR_IN_NAME})?(?P<name>{GTO_NAME})"
GTO_FULLNAME_IN_TAG = GTO_FULLNAME.replace(SEPARATOR_IN_NAME, SEPARATOR_IN_TAG)

NAME_RE = re.compile(f"^{GTO_NAME}$")
FULLNAME_RE = re.compile(f"^{GTO_FULLNAME}$")
# gto/constants.py: tag_re, character for character.
TAG_RE = re.compile(
    f"^(?P<artifact>{GTO_FULLNAME_IN_TAG})"
    f"(((#(?P<stage>{GTO_NAME})|@(?P<version>v{GTO_SEMVER}))(?P<cancel>!?))"
    r"|@((?P<deprecated>deprecated)|(?P<created>created)))"
    r"(#(?P<counter>[0-9]+))?$"
)

ACTIONS = ("register", "deregister", "assign", "unassign", "deprecate")


@dataclass(frozen=True)
class GtoTag:
    name: str  # the tag name as in git
    model: str  # GTO's artifact name, ':' form (tag_to_name), e.g. "churn" or "dir/sub:churn"
    action: str  # one of ACTIONS
    version: str | None = None  # "v1.2.3" for register / deregister
    stage: str | None = None  # for assign / unassign
    number: int | None = None  # the trailing #N, if any


def _match(name: str) -> re.Match[str] | None:
    # GTO uses re.search with ^...$, whose '$' also matches before a final newline; git ref names
    # never contain one, so reject it rather than mirror that quirk.
    return None if "\n" in name else TAG_RE.search(name)


def _model_of(m: re.Match[str]) -> str:
    return m["artifact"].replace(SEPARATOR_IN_TAG, SEPARATOR_IN_NAME)


def parse_gto_tag(name: str) -> GtoTag | None:
    """A GTO tag, or None for any other tag name (and for ``@created``, see the module doc).

    Release tags ``model@vX.Y.Z`` parse as registrations: they are GTO's registration tags.
    """
    m = _match(name)
    if m is None or m["created"]:
        return None
    number = int(m["counter"]) if m["counter"] else None
    model = _model_of(m)
    cancel = m["cancel"] == "!"
    if m["deprecated"]:
        return GtoTag(name, model, "deprecate", number=number)
    if m["version"]:
        return GtoTag(name, model, "deregister" if cancel else "register", version=m["version"], number=number)
    return GtoTag(name, model, "unassign" if cancel else "assign", stage=m["stage"], number=number)


def encode_tag(t: GtoTag) -> list:
    """A GtoTag as JSON (tether.adapters.refindex keeps parsed tag names)."""
    return [t.name, t.model, t.action, t.version, t.stage, t.number]


def decode_tag(x: list) -> GtoTag:
    name, model, action, version, stage, number = x
    if not (isinstance(name, str) and isinstance(model, str) and action in ACTIONS
            and all(v is None or isinstance(v, str) for v in (version, stage))
            and (number is None or type(number) is int)):
        raise TypeError("not a GTO tag")
    return GtoTag(name, model, action, version=version, stage=stage, number=number)


def is_gto_name(value: str) -> bool:
    """GTO's rule for stage (and type) names; a tether environment must pass it to be a GTO stage."""
    return NAME_RE.search(value) is not None and "\n" not in value


def is_gto_model(value: str) -> bool:
    """GTO's rule for artifact names (``assert_fullname_is_valid``): NAME or ``dir:NAME``."""
    return FULLNAME_RE.search(value) is not None and "\n" not in value


def model_in_tag(model: str) -> str:
    """How an artifact name is spelled in a tag (gto/constants.py: name_to_tag)."""
    return model.replace(SEPARATOR_IN_NAME, SEPARATOR_IN_TAG)


def _check(model: str, stage: str | None = None) -> None:
    if not is_gto_model(model):
        raise ValueError(f"{model!r} is not a valid GTO artifact name")
    if stage is not None and not is_gto_name(stage):
        raise ValueError(f"{stage!r} is not a valid GTO stage name")


def next_number(model: str, existing_tag_names: Iterable[str]) -> int:
    """The #N GTO gives the next numbered tag of ``model``: 1 + the highest #N among the
    artifact's tags of any action and stage (gto/tag.py: name_tag; it scans every tag name,
    lightweight ones and ``@created`` included)."""
    highest = 0
    for t in existing_tag_names:
        m = _match(t)
        if m and m["counter"] and _model_of(m) == model:
            highest = max(highest, int(m["counter"]))
    return highest + 1


def next_assignment_tag(model: str, stage: str, existing_tag_names: Iterable[str]) -> str:
    """The name `gto assign` would choose: ``<model>#<stage>#N``, N per model (not per stage)."""
    _check(model, stage)
    return f"{model_in_tag(model)}#{stage}#{next_number(model, existing_tag_names)}"


def next_unassignment_tag(model: str, stage: str, existing_tag_names: Iterable[str]) -> str:
    """The name `gto deprecate MODEL VERSION STAGE` would choose: ``<model>#<stage>!#N``."""
    _check(model, stage)
    return f"{model_in_tag(model)}#{stage}!#{next_number(model, existing_tag_names)}"


def registration_tag(model: str, version: str) -> str:
    """`gto register`'s (simple) tag, which is also tether's release tag: ``<model>@vX.Y.Z``."""
    _check(model)
    return f"{model_in_tag(model)}@{version}"


# --- The annotated-tag messages gto writes (gto/registry.py) -------------------------------
def assignment_message(model: str, version: str, stage: str) -> str:
    # registry.assign; for a commit with no registered version GTO writes "... commit <sha>".
    return f"Assigning stage {stage} to artifact {model} version {version}"


def unassignment_message(model: str, version: str, stage: str) -> str:
    return f"Unassigning stage '{stage}' to artifact '{model}' version '{version}'"


def registration_message(model: str, version: str) -> str:
    return f"Registering artifact {model} version {version}"


def deregistration_message(model: str, version: str) -> str:
    return f"Deregistering artifact {model} version {version}"


def deprecation_message(model: str) -> str:
    return f"Deprecating artifact '{model}'"


# --- GTO's state, as `gto show` computes it ------------------------------------------------
@dataclass(frozen=True)
class TagRecord:
    """One *annotated* GTO tag as git stores it (leave lightweight tags out: GTO ignores them).

    ``commit`` is the tag object's target (``git for-each-ref --format=%(*objectname)``),
    ``time`` its tagger date in Unix seconds (``%(taggerdate:unix)``) and ``commit_time`` the
    target commit's committer date (``%(*committerdate:unix)``): GTO adds a "commit" event at
    that time to every version it knows, which counts against a deprecation (is_deprecated) and
    dates an unregistered version.  None when unknown (treated as older than every tag)."""

    tag: GtoTag
    commit: str
    time: int
    commit_time: int | None = None


class _Version:
    def __init__(self, name: str, commit: str):
        self.name, self.commit = name, commit
        self.regs: list[int] = []
        self.deregs: list[int] = []
        self.assigns: dict[str, list[int]] = {}
        self.unassigns: dict[str, list[int]] = {}
        self.commit_times: list[int] = []

    @property
    def registered(self) -> bool:
        return bool(self.regs or self.deregs)  # "not discovered" in GTO's terms

    def active(self) -> bool:
        # base.Version.is_active: the latest direct event is a registration; on a tie the
        # deregistration wins (it sorts after the registrations). No direct events: active.
        if self.regs or self.deregs:
            return not self.deregs or (bool(self.regs) and max(self.regs) > max(self.deregs))
        return True

    def created_at(self) -> int:
        # base.BaseObject.authoring_event: the latest registration, else the latest indirect
        # event: a stage event or the enrichment "commit" event (GTO's filter for the latter
        # compares against "enrichment" and so never drops it).
        if self.regs:
            return max(self.regs)
        return max([*self.commit_times, *(t for d in (self.assigns, self.unassigns) for ts in d.values() for t in ts)])

    def stage_active(self, stage: str) -> bool:
        # base.VStage.is_active: the latest event is an assignment; a tied unassignment wins.
        a, u = self.assigns.get(stage, []), self.unassigns.get(stage, [])
        return bool(a) and (not u or max(a) > max(u))


def _index(records: Iterable[TagRecord], model: str) -> list[_Version]:
    """GTO's versions of `model` from its tags, in the order GTO creates them. Linear in the
    tags: each lookup GTO makes by scanning its versions is a dict lookup here."""
    recs = [r for r in records if r.tag.model == model]
    # tag.find: list_tags() (sorted by name), then a stable sort by tagger time.
    recs = sorted(sorted(recs, key=lambda r: r.tag.name), key=lambda r: r.time)
    versions: list[_Version] = []  # in the order GTO creates them (Artifact.versions)
    named: dict[tuple[str, str], _Version] = {}  # (version name, commit): its _Version
    registered: dict[str, list[_Version]] = {}  # commit: the versions registered at it, in order
    for r in recs:  # TagVersionManager runs before TagStageManager
        if r.tag.action in ("register", "deregister"):
            key = (r.tag.version or "", r.commit)  # a (de)registration tag always names its version
            v = named.get(key)
            if v is None:
                v = named[key] = _Version(*key)
                versions.append(v)
                registered.setdefault(r.commit, []).append(v)
            (v.regs if r.tag.action == "register" else v.deregs).append(r.time)
    _assign(recs, model, versions, registered)
    first: dict[str, int] = {}  # commit: the first known commit time among its tags
    for r in recs:
        if r.commit_time is not None:
            first.setdefault(r.commit, r.commit_time)
    for v in versions:  # index.EnrichmentManager: one commit event per version
        v.commit_times = [first[v.commit]] if v.commit in first else []
    return versions


def _assign(recs: list[TagRecord], model: str, versions: list[_Version], registered: dict[str, list[_Version]]) -> None:
    """TagStageManager: each assignment/unassignment tag onto the version at its commit."""
    unregistered: dict[str, _Version] = {}  # commit: the one version GTO names by the full sha
    for r in recs:
        if r.tag.action in ("assign", "unassign"):
            found = registered.get(r.commit, [])
            if len(found) > 1:
                raise ValueError(f"GTO cannot show {model}: versions {[v.name for v in found]} share commit {r.commit}")
            # An unregistered commit: GTO names the version by the full sha. (GTO makes a new
            # Version object per such tag; merged here. tether registers before it assigns.)
            v = found[0] if found else unregistered.get(r.commit)
            if v is None:
                v = unregistered[r.commit] = _Version(r.commit, r.commit)
                versions.append(v)
            d = v.assigns if r.tag.action == "assign" else v.unassigns
            d.setdefault(r.tag.stage, []).append(r.time)  # type: ignore[arg-type]


def stage_state(records: Iterable[TagRecord], model: str) -> dict[str, str | None]:
    """What `gto show` / `gto show --json` reports for each stage of ``model`` (defaults:
    ``--sort timestamp --vs 1 --av -1``): the version, or None if no version holds the stage.
    Stages are those named by any assignment/unassignment tag of the model (GTO's table lists
    the ``.gto`` config's stages instead, if it has any, with null for the empty ones).

    GTO's rule (base.Artifact.get_vstages with VersionSort.Timestamp):

    1. Assignment/unassignment tags map to versions by commit (module doc).
    2. Deregistered versions drop out (latest registration/deregistration tag is a deregistration).
    3. A (version, stage) pair holds the stage iff its latest stage tag, by tagger time, is an
       assignment (an unassignment in the same second wins).
    4. Of the pairs that hold a stage, the one whose latest assignment tag is newest wins. On a
       same-second tie: GTO lists versions newest-registration first, stable-sorts by assignment
       time and reverses, so the version with the *older* registration wins; mirrored here, but
       tether should never rely on it (use :func:`assignment_time`).

    Not modelled: deprecation (``model@deprecated`` newer than every other tag of the model hides
    the whole model from `gto show` unless ``-d``: see :func:`is_deprecated`) and versions GTO
    discovers from artifacts.yaml enrichments (tether repos have none).
    """
    return {s: (h[0] if h else None) for s, h in stage_holders(records, model).items()}


def stage_holders(records: Iterable[TagRecord], model: str) -> dict[str, tuple[str, str] | None]:
    """:func:`stage_state` with the commit of each holding version: {stage: (version name,
    commit) or None}. Raises ValueError where `gto show` fails (two versions share a commit)."""
    indexed = _index(records, model)
    versions = [v for v in indexed if v.active()]
    # get_versions(sort=Timestamp): stable sort by created_at, reversed.
    versions = sorted(versions, key=lambda v: v.created_at())[::-1]
    candidates = [  # (stage, version, time of its latest assignment)
        (s, v, max(v.assigns[s]))
        for v in versions
        for s in sorted(v.assigns, key=lambda s: max(v.assigns[s]))  # get_vstages(ascending=True)
        if v.stage_active(s)
    ]
    candidates = sorted(candidates, key=lambda c: c[2])[::-1]
    state: dict[str, tuple[str, str] | None] = {}
    for v in indexed:
        for s in [*v.assigns, *v.unassigns]:
            state.setdefault(s, None)
    for s, v, _ in candidates:
        if state[s] is None:
            state[s] = (v.name, v.commit)
    return state


def is_deprecated(records: Iterable[TagRecord], model: str) -> bool:
    """base.Artifact.is_active negated: a deprecation tag is the model's newest event, counting
    its other tags and the commit dates of its versions' commits (a tie keeps the model active)."""
    recs = [r for r in records if r.tag.model == model]
    dep = [r.time for r in recs if r.tag.action == "deprecate"]
    other = [r.time for r in recs if r.tag.action != "deprecate"]
    other += [v.commit_times[0] for v in _index(recs, model) if v.commit_times]
    return bool(dep) and (not other or max(dep) > max(other))


def assignment_time(now: int, records: Iterable[TagRecord], model: str) -> int:
    """The tagger date (Unix seconds) for tether's next GTO tag of ``model``: now, but strictly
    after every existing GTO tag of the model, so `gto show` orders it last even within the same
    second (or against a clock that ran ahead)."""
    times = [r.time for r in records if r.tag.model == model]
    return max([now, *(t + 1 for t in times)])
