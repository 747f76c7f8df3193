"""The truth of a release is its commit: derive its manifest from `dvc.yaml`, `dvc.lock`,
`params.yaml`, the git tree and the metrics files AT THAT COMMIT, with no checkout.

Any tag `<model>@vX.Y.Z` (made by `tether release`, `git tag -a`, a lightweight `git tag` or
`gto register`) gets the same manifest. The one `tether release` writes into the tag message is
an attestation, checked against this one (see `attestation_problems`); where they disagree this
one wins. Files that DVC tracks (a threshold.json inside the model directory, say) are read from
the local DVC cache by the md5 dvc.lock records; when the cache lacks them the derivation is
`partial` and commands that need those values fetch them first (see `needed_objects`).

A complete derivation depends only on content-addressed inputs (a commit, DVC objects), so it is
cached under `.git/tether/derived/` by commit and model and never goes stale; each file is sealed
with this user's key (adapters/sealed.py), and one whose seal does not verify is derived again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.core import dvcgraph
from tether.core import manifest as mf
from tether.adapters.gitrepo import Git, cat_files, object_ids
from tether.core.settings import Settings, load_yaml
from tether.registry import derive_parts as parts

DERIVE_VERSION = 3  # bump when the derivation changes: old cache entries are then ignored
# 3: every DVC object read is verified against its md5 (older entries may hold unverified bytes)
PARTS = mf.COMPONENTS


@dataclass
class Derived:
    # an mf.Manifest (None: no pipeline for this model at the commit), kept as a plain dict while
    # its readers (gates.completeness, hook._objects_on_remote) take one
    manifest: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)  # why it is not a usable release
    missing_parts: list[str] = field(default_factory=list)  # of the five parts
    unresolved: list[str] = field(default_factory=list)  # md5s of DVC objects we could not read
    fixes: dict[str, str] = field(default_factory=dict)  # part -> what to declare

    @property
    def complete(self) -> bool:
        return self.manifest is not None and not self.problems and not self.missing_parts

    def as_cache(self) -> dict[str, Any]:
        return {"v": DERIVE_VERSION, "manifest": self.manifest, "problems": self.problems,
                "missing_parts": self.missing_parts, "unresolved": self.unresolved, "fixes": self.fixes}


FIXES = {
    "weights": "declare the model under `artifacts:` in dvc.yaml with the path of a stage output or a `dvc add`ed file, and commit dvc.lock",
    "data": "add the data the model's stages read as `deps:` in dvc.yaml",
    "code": "add the scripts/modules each stage runs to its `deps:` in dvc.yaml",
    "params": "list the hyperparameters each stage reads under `params:` in dvc.yaml",
    "threshold": "write <artifact>/threshold.json ({\"value\": …}) from a stage, or declare `evaluate.threshold` in params.yaml under the evaluating stage's `params:`",
}


def cache_dir(git: Git) -> Path:
    """Under the repository's git directory (shared by worktrees), never in the work tree."""
    return git.common_dir() / "tether" / "derived"


def _cache_file(git: Git, commit: str, model: str) -> Path:
    safe = model.replace("/", "--")
    return cache_dir(git) / f"{commit}.{safe}.json"


def is_cached(git: Git, commit: str, model: str) -> bool:
    return _cache_file(git, commit, model).is_file()


def load_cached(git: Git, commit: str, model: str) -> Derived | None:
    """The kept derivation, if this user's seal on it verifies (adapters/sealed.py): a file
    under .git/ is anybody's to write, and this one feeds gates, gc and deploy."""
    from tether.adapters.sealed import read_sealed

    try:
        body = read_sealed(_cache_file(git, commit, model))
        data = json.loads(body) if body is not None else None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") != DERIVE_VERSION or not isinstance(data.get("manifest"), dict):
        return None
    if data["manifest"].get("commit") != commit or data["manifest"].get("model") != model:
        return None  # a cache file that does not describe what its name says is ignored
    return Derived(data["manifest"], data.get("problems") or [], data.get("missing_parts") or [],
                   data.get("unresolved") or [], data.get("fixes") or {})


def store_cached(git: Git, commit: str, model: str, d: Derived) -> None:
    from tether.adapters.sealed import keep_sealed

    if d.manifest is not None and not d.unresolved:  # only what can never change is kept
        keep_sealed(_cache_file(git, commit, model), json.dumps(d.as_cache(), sort_keys=True))


def derive_many(git: Git, wanted: list[tuple[str, str]], read_object: Callable[[str], bytes | None],
                use_cache: bool = True) -> dict[tuple[str, str], Derived]:
    """{(commit, model): Derived} in a fixed number of git processes, whatever the count."""
    out: dict[tuple[str, str], Derived] = {}
    todo = []
    for key in dict.fromkeys(wanted):
        cached = load_cached(git, *key) if use_cache else None
        if cached is not None:
            out[key] = cached
        else:
            todo.append(key)
    if not todo:
        return out
    commits = sorted({c for c, _ in todo})
    blobs = cat_files(git, [f"{c}:{name}" for c in commits for name in ("dvc.yaml", "dvc.lock", "params.yaml")])
    trees = git.trees_of(commits)
    pipelines: dict[tuple[str, str], _Pipeline] = {}
    specs: list[str] = []
    wanted_small: set[str] = set()
    for commit, model in todo:
        pipe = _read_pipeline(commit, model, blobs)
        if isinstance(pipe, Derived):
            out[(commit, model)] = pipe
            continue
        pipelines[(commit, model)] = pipe
        specs += _specs(commit, pipe)
        pointer = parts.pointer_file(pipe.graph.artifact.meta)
        if pointer:
            specs.append(f"{commit}:{pointer}")
            wanted_small.add(f"{commit}:{pointer}")
    ids = object_ids(git, specs)
    small = cat_files(git, [s for s in specs if ids.get(s) and (s in wanted_small or
                                                                s.rsplit("/", 1)[-1].endswith((".json", ".dvc")))])
    for key, pipe in pipelines.items():
        commit, model = key
        files = parts.CommitFiles(commit, pipe.lock, ids, small, read_object)
        d = _derive_one(model, trees.get(commit, ""), pipe, blobs.get(f"{commit}:params.yaml"), files)
        out[key] = d
        if use_cache:
            store_cached(git, commit, model, d)
    return out


@dataclass(frozen=True)
class _Pipeline:
    """A commit's dvc.yaml and dvc.lock, and the model's slice of them."""
    dvc_yaml: dict
    lock: dict
    graph: dvcgraph.ModelGraph


def _read_pipeline(commit: str, model: str, blobs: dict[str, bytes | None]) -> _Pipeline | Derived:
    """The model's pipeline at the commit, or the (unusable) derivation saying why there is none."""
    y, lk = blobs.get(f"{commit}:dvc.yaml"), blobs.get(f"{commit}:dvc.lock")
    if y is None:
        return Derived(None, ["its commit has no dvc.yaml"])
    try:
        dvc_yaml = load_yaml(y.decode())
        lock = load_yaml(lk.decode()) if lk is not None else {}
        if not isinstance(dvc_yaml, dict) or not isinstance(lock, dict):
            raise ValueError("not a mapping")
        graph = dvcgraph.model_graph(dvc_yaml, lock, model)
        Settings.from_meta(graph.artifact.meta)  # a bad setting at that commit is a finding too
    except Exception as exc:  # noqa: BLE001 - any broken pipeline file is one finding
        msg = getattr(exc, "message", None) or str(exc)
        return Derived(None, [f"cannot read its pipeline: {msg}"])
    return _Pipeline(dvc_yaml, lock, graph)


def _specs(commit: str, pipe: _Pipeline) -> list[str]:
    """The git objects at the commit a derivation of the model may read."""
    graph = pipe.graph
    specs = [f"{commit}:{p}" for p in graph.code]
    specs += [f"{commit}:{e.path}" for e in graph.data if not e.external]
    specs += [f"{commit}:{p}" for p in metric_paths(pipe.dvc_yaml, graph)]
    specs += [f"{commit}:{graph.artifact.path}", f"{commit}:{graph.artifact.path}.dvc"]
    specs += [f"{commit}:{graph.artifact.path}/{n}" for n in _ART_FILES]
    specs.append(f"{commit}:conf")
    return specs


_ART_FILES = ("threshold.json", "metrics.json", "feature_schema.json", "runtime.json")


def metric_paths(dvc_yaml: dict, graph: dvcgraph.ModelGraph) -> list[str]:
    """The metrics files a release of this model reads its metrics from (wherever they are):
    those DVC knows of for this model, the model's stages' `metrics:` and the top-level
    `metrics:` list (where dvclive declares its files)."""
    paths = []
    names = {s.name for s in graph.stages}
    stages = dvc_yaml.get("stages") or {}
    for name, spec in stages.items() if isinstance(stages, dict) else ():
        if not isinstance(spec, dict):
            continue
        if name not in names and not _evaluates(spec, graph):
            continue
        for m in spec.get("metrics") or ():
            p = next(iter(m)) if isinstance(m, dict) else m
            if isinstance(p, str):
                paths.append(dvcgraph.norm(p))
    own = [o.path for st in graph.stages for o in st.outs]
    other = [out for out, st in graph.producers.items() if st not in names]
    for m in dvc_yaml.get("metrics") or ():
        m = m if isinstance(m, str) else next(iter(m), None) if isinstance(m, dict) else None
        if not isinstance(m, str):
            continue
        p = dvcgraph.norm(m)
        # dvclive's files sit in an evaluating stage's output; another model's stay out
        if any(dvcgraph.under(p, o) for o in own) or not any(dvcgraph.under(p, o) for o in other):
            paths.append(p)
    return list(dict.fromkeys(paths))


def _evaluates(spec: dict, graph: dvcgraph.ModelGraph) -> bool:
    """A stage that reads the model's weights (an evaluate stage downstream of training)."""
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps") or () if d]
    return any(dvcgraph.under(dvcgraph.norm(d), graph.artifact.path) or
               any(dvcgraph.under(dvcgraph.norm(d), w.path) for w in graph.weights) for d in deps)


def _derive_one(model: str, tree: str, pipe: _Pipeline, params_blob: bytes | None,
                files: parts.CommitFiles) -> Derived:
    """The manifest of the model at one commit, each component built by its own builder
    (derive_parts.py), and what the commit lacks."""
    d = Derived(None)
    graph = pipe.graph
    art = graph.artifact
    settings = Settings.from_meta(art.meta)
    data = parts.data_part(graph, files)
    weights = parts.weights_part(graph, settings, files)
    code = parts.code_part(graph, files)
    params_values, why = parts.params_values(params_blob)
    if why:
        d.problems.append(why)
    found = parts.metrics_found(art.path, settings, metric_paths(pipe.dvc_yaml, graph), files)
    threshold, why = parts.find_threshold(settings, graph, params_values, files, found)
    if why:
        d.problems.append(why)
    metrics = parts.recorded_metrics(found)
    schema = files.read_json(f"{art.path}/{settings.feature_schema_file}")
    runtime = files.read_json(f"{art.path}/{settings.runtime_file}")
    manifest: mf.Manifest = {
        "schema_version": mf.SCHEMA_VERSION,
        "model": model,
        "version": None,
        "commit": files.commit,
        "tree": tree,
        "created_at": None,
        "released_by": None,
        "artifact": {"path": art.path, "type": art.type},
        "components": {
            "weights": weights,
            "data": data,
            "code": code,
            "params": parts.params_part(graph, params_blob, params_values, files),
            "threshold": parts.threshold_part(threshold, graph, settings),
        },
        "stages": {s.name: s.cmd for s in graph.stages},
        "metrics": metrics,
        "predictions_sha256": metrics.get("predictions_sha256"),
        "feature_schema": schema if isinstance(schema, dict) else {},
        "runtime": runtime if isinstance(runtime, dict) else {},
        "derived": True,
    }
    d.manifest = dict(manifest)
    d.unresolved = files.unresolved
    _missing_parts(d, manifest["components"], graph, settings, threshold is not None)
    d.unresolved = sorted(set(d.unresolved))
    return d


def _missing_parts(d: Derived, comps: mf.Components, graph: dvcgraph.ModelGraph, settings: Settings,
                   has_threshold: bool) -> None:
    """Each of the five parts the commit lacks, with what to declare (a threshold the cache
    could not be read for yet is not missing: the derivation is partial)."""
    weights = comps["weights"]
    for part, ok in (("weights", bool(weights) and all(w.get("md5") or w.get("git_id") for w in weights)),
                     ("data", bool(comps["data"])), ("code", bool(comps["code"])), ("params", bool(graph.params)),
                     ("threshold", has_threshold)):
        if not ok and not (part == "threshold" and d.unresolved):
            d.missing_parts.append(part)
            d.fixes[part] = FIXES[part]
            if part == "threshold":
                art_path = graph.artifact.path
                art_is_file = any(w["path"] == art_path and not str(w.get("md5") or "").endswith(".dir")
                                  for w in weights)
                d.fixes[part] = (f"meta.tether.threshold points to {settings.threshold}, which holds no number at "
                                 "this commit" if settings.threshold else parts.threshold_fix(art_path, not art_is_file))


# -- the attestation -------------------------------------------------------------------------
def attestation_problems(derived: dict[str, Any], attested: dict[str, Any], partial: bool = False) -> list[str]:
    """Where the manifest in a tag message disagrees with what its commit says. Only what the
    commit determines is compared; sha256 values are checked when bytes are read (verify,
    deploy). `partial`: some DVC objects (a threshold or metrics file inside an output) could not
    be read here yet, so a value the derivation lacks is not evidence against the message."""
    out = []
    if attested.get("commit") != derived["commit"]:
        out.append(f"the message records commit {str(attested.get('commit'))[:12]}")
    if attested.get("tree") != derived["tree"]:
        out.append(f"the message records tree {str(attested.get('tree'))[:12]}")
    if (attested.get("artifact") or {}).get("path") != derived["artifact"]["path"]:
        out.append(f"the message records artifact.path {(attested.get('artifact') or {}).get('path')!r}, "
                   f"dvc.yaml says {derived['artifact']['path']!r}")
    ac, dc = attested.get("components") or {}, derived["components"]
    if not isinstance(ac, dict):
        return out + ["the message's components are not an object"]
    moved = _moved_between_weights_and_data(ac, dc)
    for part, key in (("weights", "md5"), ("data", "md5"), ("code", "git_id")):
        try:
            said = {e["path"]: e.get(key) for e in ac.get(part) or []}
        except (TypeError, KeyError, AttributeError):
            out.append(f"the message's {part} are malformed")
            continue
        have = {e["path"]: e.get(key) for e in dc[part]}
        if said != have and not (part in ("weights", "data") and moved):
            diff = sorted({p for p in set(said) | set(have) if said.get(p) != have.get(p)})
            out.append(f"{part} differ from the commit ({', '.join(diff[:3])})")
    at = (ac.get("threshold") or {}).get("value") if isinstance(ac.get("threshold"), dict) else None
    dt = dc["threshold"].get("value")
    if dt is not None and at != dt:
        out.append(f"threshold {at!r} in the message, {dt!r} at the commit")
    am, dm = attested.get("metrics") or {}, derived.get("metrics") or {}
    if isinstance(am, dict):
        bad = sorted(k for k, v in am.items() if parts.num(v) and k in dm and parts.num(dm[k]) and abs(dm[k] - v) > 1e-9)
        if not partial:
            bad += sorted(k for k, v in am.items() if parts.num(v) and dm and k not in dm)
        if bad:
            out.append(f"metrics differ from the commit's metrics files ({', '.join(bad[:4])})")
    else:
        out.append("the message's metrics are not an object")
    return out


def _moved_between_weights_and_data(ac: dict[str, Any], dc: dict[str, Any]) -> bool:
    """The message and the commit name the same files with the same md5s, only some under the
    other part: an older tether listed a training stage's side output (model_params.json) as
    data. Not a disagreement about the release."""
    try:
        said = {e["path"]: e.get("md5") for part in ("weights", "data") for e in ac.get(part) or []}
    except (TypeError, KeyError, AttributeError):
        return False
    have = {e["path"]: e.get("md5") for part in ("weights", "data") for e in dc[part]}
    return said == have


def merge(derived: dict[str, Any], attested: dict[str, Any] | None, tag_meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest commands use: the derived one, with what only the release recorded
    (sha256 of each weights file when its md5 agrees, who released, runtime) taken from an
    attestation that agrees."""
    m = json.loads(json.dumps(derived))
    m.update({k: v for k, v in tag_meta.items() if v is not None})
    if attested:
        # by path and md5 across both parts: an older tether may have listed a file under the other
        sha = {(e.get("path"), e.get("md5")): e.get("sha256")
               for part in ("weights", "data")
               for e in (attested.get("components") or {}).get(part) or [] if isinstance(e, dict)}
        for part in ("weights", "data"):
            for e in m["components"][part]:
                v = sha.get((e["path"], e["md5"]))
                e["sha256"] = v if isinstance(v, str) and len(v) == 64 else None
        for k in ("created_at", "released_by"):
            if isinstance(attested.get(k), str):
                m[k] = attested[k]
        for k in ("runtime", "feature_schema"):
            if not m.get(k) and isinstance(attested.get(k), dict):
                m[k] = attested[k]
        m["derived"] = False
    return m


def needed_objects(d: Derived) -> list[str]:
    return list(d.unresolved)


def cache_reader(cache_root: Path) -> Callable[[str], bytes | None]:
    """Read a DVC object from the local cache (DVC 3 layout) by md5; None if absent or if its
    bytes do not hash to that md5 (a damaged object is as good as absent: the derivation stays
    partial and is never cached, so a repaired object is read afresh). Only small files are
    ever asked for (threshold, metrics, listings); DVC 3 names a file object and a `.dir`
    listing alike by the md5 of the bytes it stores."""
    import hashlib
    import re

    def read(md5: str) -> bytes | None:
        if not isinstance(md5, str) or not re.fullmatch(r"[0-9a-f]{32}(\.dir)?", md5):
            return None
        p = cache_root / md5[:2] / md5[2:]
        try:
            if p.stat().st_size > 64 * 1024 * 1024:
                return None
            data = p.read_bytes()
        except OSError:
            return None
        return data if hashlib.md5(data).hexdigest() == md5[:32] else None

    return read
