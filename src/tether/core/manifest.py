"""The release manifest (schema_version 1): parse, diff, and the bump it implies. Pure.

It travels in the annotated tag's message, so every read command works from the tag alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

SCHEMA_VERSION = 1
MAX_MESSAGE = 16 * 1024 * 1024  # larger messages are not manifests tether wrote
# What a tag message tether writes stays under, whatever the dataset: a directory output is one
# entry (its DVC `.dir` md5, the per-file listing stored out of line, and a tree sha256), never a
# line per file (tests/workflow/test_manifest_size.py releases a 10,000-file directory).
MAX_ATTESTED = 16 * 1024
COMPONENTS = ("weights", "data", "code", "params", "threshold")
_REQUIRED = ("model", "version", "commit", "tree", "created_at", "released_by", "components")


# -- the manifest's shape --------------------------------------------------------------------
# TypedDicts cost nothing at run time: a manifest stays the plain dict json reads and writes, and
# mypy checks every key. Optional keys are those of a `total=False` subclass (Python 3.10 has no
# NotRequired). What tether builds is typed with them; the readers below take any mapping, since
# a manifest read from a tag message is only checked as far as `loads` checks it.


class _OutputEntryBase(TypedDict):
    path: str
    md5: str | None  # DVC's md5 (`….dir` for a directory output); None for a file kept in git
    size: int | None
    sha256: str | None  # of the bytes, recorded at release; None in a derivation
    stage: str | None  # the stage that writes or reads it; None for a `dvc add`ed or git-kept model


class OutputEntry(_OutputEntryBase, total=False):
    """One file or directory of `components.weights` or `components.data`."""
    role: str  # weights only: model | threshold | metrics | schema | runtime | bundle-manifest
    git_id: str  # kept in git: git holds its bytes, not the DVC remote
    external: bool  # data only: a URL or a path outside the repository, pinned, never copied
    dvc_file: str  # a model added with `dvc add`: its .dvc file


class CodeEntry(TypedDict):
    path: str
    type: str  # blob | tree | missing
    git_id: str | None


class ConfigRef(TypedDict):
    dir: str
    tree: str | None  # the git tree of the Hydra config directory at the commit


class ParamsPart(TypedDict):
    path: str
    sha256: str | None  # of params.yaml's bytes; None without one
    values: dict[str, Any]  # params.yaml as read
    used: dict[str, Any]  # params file -> {key: value} the model's stages declare
    config: ConfigRef


class _ThresholdBase(TypedDict):
    value: Any  # a number, or None when the commit holds none
    source: str | None


class ThresholdPart(_ThresholdBase, total=False):
    """Where the threshold came from; a threshold.json may carry more keys, kept as written."""
    params: list[str]  # the params that move the threshold, not the model


class Components(TypedDict):
    weights: list[OutputEntry]
    data: list[OutputEntry]
    code: list[CodeEntry]
    params: ParamsPart
    threshold: ThresholdPart


class ArtifactRef(TypedDict):
    path: str
    type: str


Metrics = dict[str, Any]  # flat name -> number (or string) from the model's metrics files
FeatureSchema = dict[str, Any]  # {"features": [{"name", "dtype", …}]} as the pipeline wrote it
Runtime = dict[str, Any]  # the pipeline's runtime.json, plus lock_file / lock_sha256 at release


class _ManifestBase(TypedDict):
    schema_version: int
    model: str
    version: str | None  # None in a derivation: the tag names it
    commit: str
    tree: str
    created_at: str | None
    released_by: str | None
    artifact: ArtifactRef
    components: Components
    stages: dict[str, str]  # stage name -> command
    metrics: Metrics
    predictions_sha256: Any
    feature_schema: FeatureSchema
    runtime: Runtime


class Manifest(_ManifestBase, total=False):
    """A release manifest (schema_version 1): derived from a commit, or attested in a tag message."""
    derived: bool  # True: from the commit alone; False: an agreeing attestation filled it in


class FilesDiff(TypedDict):
    changed: bool
    added: list[str]
    removed: list[str]
    modified: list[str]


ValueChange = TypedDict("ValueChange", {"from": Any, "to": Any})
ParamsDiff = TypedDict("ParamsDiff", {"changed": bool, "keys": dict[str, ValueChange]})
ThresholdDiff = TypedDict("ThresholdDiff", {"changed": bool, "from": Any, "to": Any})
MetricDiff = TypedDict("MetricDiff", {"from": Any, "to": Any, "delta": float | None})


class ComponentsDiff(TypedDict):
    weights: FilesDiff
    data: FilesDiff
    code: FilesDiff
    params: ParamsDiff
    threshold: ThresholdDiff


ManifestDiff = TypedDict("ManifestDiff", {
    "from": str,  # model@vX.Y.Z
    "to": str,
    # a ComponentsDiff; typed loosely so that renderers may walk its five parts in order
    "components": dict[str, Any],
    "feature_schema_changed": bool,
    "metrics": dict[str, MetricDiff],
})


class ManifestError(ValueError):
    """A tag message that is not a tether manifest (e.g. a tag made by hand)."""


def dumps(manifest: Mapping[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _manifest_start(text: str) -> int:
    """Where the manifest starts in a tag message: after the blank line that ends the release
    note (tag_message's layout), so a note holding a brace cannot hide it; a message that is only
    a manifest starts at its first brace. (Indented JSON never holds a blank line.)"""
    at = text.rfind("\n\n{")
    return at + 2 if at >= 0 else text.find("{")


_DEFAULT_NOTE = re.compile(r"Release \S+(@v| v)\S+")


def note(message: str | None) -> str | None:
    """The release note: the tag message's text before its manifest (what `release -m` gave);
    None for release's default summary, or a message with no text before the manifest.
    Untrusted text: whoever prints it escapes it."""
    if not message:
        return None
    text = message.strip()
    start = _manifest_start(text)
    head = (text[:start] if start >= 0 else text).strip()
    return None if not head or _DEFAULT_NOTE.fullmatch(head) else head


def loads(message: str) -> dict[str, Any]:
    text = message.strip()
    start = _manifest_start(text)
    if start < 0:
        raise ManifestError("the tag message holds no manifest")
    # The manifest may follow a human summary line; it runs to the end of the message (the
    # git adapter has already removed a signature, in any of git's formats).
    body = text[start:]
    if len(body) > MAX_MESSAGE:
        raise ManifestError(f"the manifest is larger than {MAX_MESSAGE} bytes")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"the tag message is not valid JSON ({exc.msg})") from None
    except (RecursionError, ValueError):
        raise ManifestError("the tag message is not a readable JSON document") from None
    if not isinstance(data, dict):
        raise ManifestError("the manifest is not a JSON object")
    comps = data.get("components")
    if not isinstance(comps, dict):
        raise ManifestError("the manifest's components are not an object")
    for part in ("weights", "data", "code"):
        if not isinstance(comps.get(part, []), list) or not all(isinstance(e, dict) and isinstance(e.get("path"), str)
                                                                 for e in comps.get(part, [])):
            raise ManifestError(f"the manifest's components.{part} is not a list of files")
    for part in ("params", "threshold"):
        if not isinstance(comps.get(part, {}), dict):
            raise ManifestError(f"the manifest's components.{part} is not an object")
    if not isinstance(data.get("metrics", {}) or {}, dict):
        raise ManifestError("the manifest's metrics are not an object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"unsupported manifest schema_version {data.get('schema_version')!r}")
    missing = [k for k in _REQUIRED if k not in data]
    missing += [f"components.{c}" for c in COMPONENTS if c not in (data.get("components") or {})]
    if missing:
        raise ManifestError("the manifest lacks " + ", ".join(missing))
    return data


def tag_message(manifest: Mapping[str, Any], summary: str | None) -> str:
    head = summary.strip() if summary else f"Release {manifest['model']} v{manifest['version']}"
    return f"{head}\n\n{dumps(manifest)}"


def dvc_objects(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The weights and data entries that live in DVC storage (not in git), i.e. what a release
    needs on the DVC remote."""
    comps = manifest["components"]
    return [e for e in comps["weights"] + comps["data"]
            if e.get("md5") and not e.get("git_id") and not e.get("external")]


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(values, dict):
        out: dict[str, Any] = {}
        for k, v in values.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: values}


def _by_path(entries: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    return {e["path"]: e.get(key) for e in entries}


def _files(ea: Sequence[Mapping[str, Any]], eb: Sequence[Mapping[str, Any]], key: str) -> FilesDiff:
    pa, pb = _by_path(ea, key), _by_path(eb, key)
    added = sorted(set(pb) - set(pa))
    removed = sorted(set(pa) - set(pb))
    modified = sorted(p for p in set(pa) & set(pb) if pa[p] != pb[p])
    return {"changed": bool(added or removed or modified), "added": added, "removed": removed, "modified": modified}


def _params_diff(pa: ParamsPart, pb: ParamsPart) -> ParamsDiff:
    fa, fb = flatten(pa.get("values", {})), flatten(pb.get("values", {}))
    keys: dict[str, ValueChange] = {
        k: {"from": fa.get(k), "to": fb.get(k)}
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k)
    }
    return {"changed": bool(keys) or pa.get("sha256") != pb.get("sha256"), "keys": keys}


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> ManifestDiff:
    """What changed from release a to release b, component by component."""
    ca, cb = a["components"], b["components"]
    ta, tb = ca["threshold"].get("value"), cb["threshold"].get("value")
    components: ComponentsDiff = {
        "weights": _files(ca["weights"], cb["weights"], "md5"),
        "data": _files(ca["data"], cb["data"], "md5"),
        "code": _files(ca["code"], cb["code"], "git_id"),
        "params": _params_diff(ca["params"], cb["params"]),
        "threshold": {"changed": ta != tb, "from": ta, "to": tb},
    }
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    return {
        "from": f"{a['model']}@v{a['version']}",
        "to": f"{b['model']}@v{b['version']}",
        "components": dict(components),
        "feature_schema_changed": schema_key(a) != schema_key(b),
        "metrics": {
            k: {"from": ma.get(k), "to": mb.get(k), "delta": _delta(ma.get(k), mb.get(k))}
            for k in sorted(set(ma) | set(mb))
            if isinstance(ma.get(k, 0), (int, float)) and isinstance(mb.get(k, 0), (int, float))
        },
    }


def _delta(x: Any, y: Any) -> float | None:
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return round(y - x, 6)
    return None


def schema_key(m: Mapping[str, Any]) -> tuple[tuple[Any, Any], ...]:
    """The feature schema's contract: names and dtypes. Observed ranges drift with data and
    are not a breaking change."""
    feats = (m.get("feature_schema") or {}).get("features") or []
    return tuple((f.get("name"), f.get("dtype")) for f in feats)


def propose_bump(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(major|minor|patch, reasons), or (None, []) when nothing in the tuple changed."""
    if previous is None:
        return "initial", ["first release of this model"]
    d = diff(previous, current)
    comps = d["components"]
    if d["feature_schema_changed"]:
        return "major", ["the feature schema changed (names or dtypes)"]
    # Threshold-only params (those of the stage that picks the threshold) and bundle files that
    # are not the fitted model move the threshold or the metrics, not the model.
    tkeys = tuple(current["components"]["threshold"].get("params") or ())
    params_keys = [k for k in comps["params"]["keys"] if not any(k == t or k.startswith(t + ".") for t in tkeys)]
    model_files = {e["path"] for e in previous["components"]["weights"] + current["components"]["weights"]
                   if e.get("role", "model") == "model"}
    w = comps["weights"]
    weights_changed = any(p in model_files for p in w["added"] + w["removed"] + w["modified"])
    minor = [c for c, changed in (("data", comps["data"]["changed"]), ("params", bool(params_keys)),
                                  ("weights", weights_changed)) if changed]
    if minor:
        return "minor", [f"{c} changed" for c in minor]
    patch = [c for c, changed in (("threshold", comps["threshold"]["changed"]), ("code", comps["code"]["changed"]))
             if changed]
    if patch:
        return "patch", [f"{c} changed" for c in patch]
    return None, []
