"""The truth of a release is its commit: derive its manifest from `dvc.yaml`, `dvc.lock`,
`params.yaml`, the git tree and the metrics files AT THAT COMMIT, with no checkout.

Any tag `<model>@vX.Y.Z` (made by `tether release`, `git tag -a`, a lightweight `git tag` or
`gto register`) gets the same manifest. The one `tether release` writes into the tag message is
an attestation, checked against this one (see `attestation_problems`); where they disagree this
one wins. Files that DVC tracks (a threshold.json inside the model directory, say) are read from
the local DVC cache by the md5 dvc.lock records; when the cache lacks them the derivation is
`partial` and commands that need those values fetch them first (see `needed_objects`).

A complete derivation depends only on content-addressed inputs (a commit, DVC objects), so it is
cached under `.git/tether/derived/` by commit and model and never goes stale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tether.core import dvcgraph
from tether.core import paths
from tether.core import manifest as mf
from tether.digest import sha256_bytes
from tether.adapters.gitrepo import Git, cat_files, object_ids
from tether.core.settings import Settings, load_yaml

DERIVE_VERSION = 3  # bump when the derivation changes: old cache entries are then ignored
# 3: every DVC object read is verified against its md5 (older entries may hold unverified bytes)
PARTS = mf.COMPONENTS


@dataclass
class Derived:
    manifest: dict | None  # None: no pipeline for this model at the commit
    problems: list[str] = field(default_factory=list)  # why it is not a usable release
    missing_parts: list[str] = field(default_factory=list)  # of the five parts
    unresolved: list[str] = field(default_factory=list)  # md5s of DVC objects we could not read
    fixes: dict = field(default_factory=dict)  # part -> what to declare

    @property
    def complete(self) -> bool:
        return self.manifest is not None and not self.problems and not self.missing_parts

    def as_cache(self) -> dict:
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
    try:
        data = json.loads(_cache_file(git, commit, model).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("v") != DERIVE_VERSION or not isinstance(data.get("manifest"), dict):
        return None
    if data["manifest"].get("commit") != commit or data["manifest"].get("model") != model:
        return None  # a cache file that does not describe what its name says is ignored
    return Derived(data["manifest"], data.get("problems") or [], data.get("missing_parts") or [],
                   data.get("unresolved") or [], data.get("fixes") or {})


def store_cached(git: Git, commit: str, model: str, d: Derived) -> None:
    if d.manifest is None or d.unresolved:
        return  # only what can never change is cached
    path = _cache_file(git, commit, model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(d.as_cache(), sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only .git only costs speed


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
    graphs: dict[tuple[str, str], tuple] = {}
    specs: list[str] = []
    wanted_small: set[str] = set()
    for commit, model in todo:
        y, lk = blobs.get(f"{commit}:dvc.yaml"), blobs.get(f"{commit}:dvc.lock")
        if y is None:
            out[(commit, model)] = Derived(None, ["its commit has no dvc.yaml"])
            continue
        try:
            dvc_yaml = load_yaml(y.decode())
            lock = load_yaml(lk.decode()) if lk is not None else {}
            if not isinstance(dvc_yaml, dict) or not isinstance(lock, dict):
                raise ValueError("not a mapping")
            graph = dvcgraph.model_graph(dvc_yaml, lock, model)
            Settings.from_meta(graph.artifact.meta)  # a bad setting at that commit is a finding too
        except Exception as exc:  # noqa: BLE001 - any broken pipeline file is one finding
            msg = getattr(exc, "message", None) or str(exc)
            out[(commit, model)] = Derived(None, [f"cannot read its pipeline: {msg}"])
            continue
        graphs[(commit, model)] = (dvc_yaml, lock, graph)
        specs += [f"{commit}:{p}" for p in graph.code]
        specs += [f"{commit}:{e.path}" for e in graph.data if not e.external]
        specs += [f"{commit}:{p}" for p in _metric_paths(dvc_yaml, graph)]
        specs += [f"{commit}:{graph.artifact.path}", f"{commit}:{graph.artifact.path}.dvc"]
        specs += [f"{commit}:{graph.artifact.path}/{n}" for n in _ART_FILES]
        specs.append(f"{commit}:conf")
        pointer = _pointer_file(graph.artifact.meta)
        if pointer:
            specs.append(f"{commit}:{pointer}")
            wanted_small.add(f"{commit}:{pointer}")
    ids = object_ids(git, specs)
    small = cat_files(git, [s for s in specs if ids.get(s) and (s in wanted_small or
                                                                s.rsplit("/", 1)[-1].endswith((".json", ".dvc")))])
    for key, (dvc_yaml, lock, graph) in graphs.items():
        commit, model = key
        d = _derive_one(commit, model, trees.get(commit, ""), dvc_yaml, lock, graph,
                        blobs.get(f"{commit}:params.yaml"), ids, small, read_object)
        out[key] = d
        if use_cache:
            store_cached(git, commit, model, d)
    return out


_ART_FILES = ("threshold.json", "metrics.json", "feature_schema.json", "runtime.json")


def _metric_paths(dvc_yaml: dict, graph: dvcgraph.ModelGraph) -> list[str]:
    """Metrics files DVC knows of for this model: the model's stages' `metrics:` and the
    top-level `metrics:` list (where dvclive declares its files)."""
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


def metric_paths(dvc_yaml: dict, graph: dvcgraph.ModelGraph) -> list[str]:
    """The metrics files a release of this model reads its metrics from (wherever they are)."""
    return _metric_paths(dvc_yaml, graph)


def _evaluates(spec: dict, graph: dvcgraph.ModelGraph) -> bool:
    """A stage that reads the model's weights (an evaluate stage downstream of training)."""
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps") or () if d]
    return any(dvcgraph.under(dvcgraph.norm(d), graph.artifact.path) or
               any(dvcgraph.under(dvcgraph.norm(d), w.path) for w in graph.weights) for d in deps)


def _derive_one(commit, model, tree, dvc_yaml, lock, graph, params_blob, ids, small, read_object) -> Derived:
    d = Derived(None)
    outs: dict[str, str] = {o.path: o.md5 for st in dvcgraph.lock_stages(lock).values() for o in st.outs if o.md5}

    def read(path: str) -> bytes | None:
        """A small file at the commit: from git, else from the DVC object dvc.lock names."""
        spec = f"{commit}:{path}"
        if ids.get(spec):
            return small.get(spec)
        if path in outs:
            return _obj(outs[path])
        for out_path, md5 in outs.items():  # a file inside a directory output
            if md5.endswith(".dir") and dvcgraph.under(path, out_path):
                listing = _obj(md5)
                if listing is None:
                    return None
                try:
                    rel = path[len(out_path) + 1:]
                    child = next((c["md5"] for c in json.loads(listing) if c.get("relpath") == rel), None)
                except (ValueError, TypeError, AttributeError):
                    return None
                return _obj(child) if child else None
        return None

    def _obj(md5: str) -> bytes | None:
        data = read_object(md5)
        if data is None:
            d.unresolved.append(md5)
        return data

    def read_json(path: str):
        raw = read(path)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    art = graph.artifact
    settings = Settings.from_meta(art.meta)
    data = []
    for e in graph.data:
        entry = {"path": e.path, "md5": e.md5, "size": e.size, "sha256": None, "stage": e.stage}
        if e.external:
            entry["external"] = True  # a URL or a path outside the repository: pinned, never copied
        gid = None if e.external else ids.get(f"{commit}:{e.path}")
        if gid:
            entry["git_id"] = gid
        data.append(entry)
    roles = {settings.threshold_file: "threshold", settings.metrics_file: "metrics",
             settings.feature_schema_file: "schema", settings.runtime_file: "runtime",
             settings.bundle_manifest_file: "bundle-manifest"}
    weights = []
    for e in graph.weights:
        w = {"path": e.path, "md5": e.md5, "size": e.size, "sha256": None, "stage": e.stage,
             "role": roles.get(Path(e.path).name, "model")}
        if gid := ids.get(f"{commit}:{e.path}"):
            w["git_id"] = gid  # a model kept in git and read by a stage: git holds its bytes
        weights.append(w)
    if not weights:
        weights = _unstaged_weights(commit, art.path, ids, small)
    code = [{"path": p, "type": "blob" if ids.get(f"{commit}:{p}") else "missing", "git_id": ids.get(f"{commit}:{p}")}
            for p in graph.code]
    params_values = {}
    if params_blob is not None:
        try:
            params_values = load_yaml(params_blob.decode()) or {}
        except Exception:  # noqa: BLE001
            d.problems.append("params.yaml at its commit is not valid YAML")
    metrics: dict = {}
    mj = read_json(f"{art.path}/{settings.metrics_file}")
    if isinstance(mj, dict):
        metrics.update(mj)
    for p in _metric_paths(dvc_yaml, graph):
        if p == f"{art.path}/{settings.metrics_file}":
            continue
        found = read_json(p)
        if isinstance(found, dict):
            for k, v in mf.flatten(found).items():
                metrics.setdefault(k, v)
    threshold, why = _threshold(settings, art, graph, params_values, read, read_json, metrics, dvc_yaml)
    if why:
        d.problems.append(why)
    metrics = {k: v for k, v in metrics.items() if isinstance(k, str) and (_num(v) or isinstance(v, str))}
    schema = read_json(f"{art.path}/{settings.feature_schema_file}")
    runtime = read_json(f"{art.path}/{settings.runtime_file}")
    conf_id = ids.get(f"{commit}:conf")
    tkeys = sorted(k for st in graph.stages for values in st.params.values() for k in (values or {})
                   if any(o.path.endswith("/" + settings.threshold_file) for o in st.outs))
    d.manifest = {
        "schema_version": mf.SCHEMA_VERSION,
        "model": model,
        "version": None,
        "commit": commit,
        "tree": tree,
        "created_at": None,
        "released_by": None,
        "artifact": {"path": art.path, "type": art.type},
        "components": {
            "weights": weights,
            "data": data,
            "code": code,
            "params": {"path": "params.yaml", "sha256": sha256_bytes(params_blob) if params_blob is not None else None,
                       "values": params_values, "used": graph.params,
                       "config": {"dir": "conf", "tree": conf_id}},
            "threshold": {**(threshold or {"value": None, "source": None}), "params": tkeys},
        },
        "stages": {s.name: s.cmd for s in graph.stages},
        "metrics": metrics,
        "predictions_sha256": metrics.get("predictions_sha256"),
        "feature_schema": schema if isinstance(schema, dict) else {},
        "runtime": runtime if isinstance(runtime, dict) else {},
        "derived": True,
    }
    for part, ok in (("weights", bool(weights) and all(w.get("md5") or w.get("git_id") for w in weights)),
                     ("data", bool(data)), ("code", bool(code)), ("params", bool(graph.params)),
                     ("threshold", threshold is not None)):
        if not ok and not (part == "threshold" and d.unresolved):
            d.missing_parts.append(part)
            d.fixes[part] = FIXES[part]
            if part == "threshold":
                art_is_file = any(w["path"] == art.path and not str(w.get("md5") or "").endswith(".dir")
                                  for w in weights)
                d.fixes[part] = (f"meta.tether.threshold points to {settings.threshold}, which holds no number at "
                                 "this commit" if settings.threshold else threshold_fix(art.path, not art_is_file))
    d.unresolved = sorted(set(d.unresolved))
    return d


def _pointer_file(meta: dict) -> str | None:
    """The file a `meta.tether.threshold: FILE:KEY` pointer names, if it is a safe path."""
    raw = ((meta or {}).get("tether") or {}).get("threshold") if isinstance(meta, dict) else None
    file = str(raw).partition(":")[0] if raw else ""
    return paths.normalise(file) if file and paths.problem(file) is None else None


def _threshold(settings: Settings, art, graph, params_values: dict, read, read_json, metrics: dict,
               dvc_yaml: dict) -> tuple[dict | None, str | None]:
    """(threshold, problem). Where users keep it, first match wins:
    1. `meta.tether.threshold: FILE:KEY` (e.g. `params.yaml:evaluate.threshold`), authoritative;
    2. `<artifact>/threshold.json` ({"value": …}) when the artifact is a directory;
    3. a param named `threshold` (`evaluate.threshold`, `train.threshold`) of a stage in the
       model's graph, the stages that evaluate the model included; one such key, else ambiguous;
    4. a `threshold` key in the metrics the model's stages declare."""
    from tether.commands.release_facts import dvcgraph_param

    if settings.threshold:
        file, _, key = str(settings.threshold).partition(":")
        keys = tuple(k for k in key.split(".") if k)
        if not file or not keys or paths.problem(file):
            return None, (f"meta.tether.threshold {settings.threshold!r} is not FILE:KEY "
                          "(e.g. params.yaml:evaluate.threshold)")
        file = paths.normalise(file)
        doc: dict | None
        if file == "params.yaml":
            doc = params_values
        else:
            raw = read(file)
            try:
                doc = load_yaml(raw.decode()) if raw is not None else None  # YAML reads JSON too
            except Exception:  # noqa: BLE001
                doc = None
        value = _dig(doc, keys) if isinstance(doc, dict) else None
        if isinstance(value, dict) and _num(value.get("value")):
            value = value["value"]
        if not _num(value):
            return None, None  # a missing part: the fix names the pointer
        return {"value": value, "source": f"{file}:{'.'.join(keys)}"}, None
    tj = read_json(f"{art.path}/{settings.threshold_file}")
    if isinstance(tj, dict) and _num(tj.get("value")):
        return {**tj, "source": tj.get("source") or f"{art.path}/{settings.threshold_file}"}, None
    value = dvcgraph_param(graph.params, ("evaluate", "threshold"))
    if _num(value):
        return {"value": value, "source": "params: evaluate.threshold"}, None
    found = {k: v for values in graph.params.values() for k, v in mf.flatten(values or {}).items()
             if k.rsplit(".", 1)[-1] == "threshold" and _num(v)}
    if len(found) == 1:
        k, v = next(iter(found.items()))
        return {"value": v, "source": f"params: {k}"}, None
    if len(found) > 1:
        return None, (f"several params could be the threshold ({', '.join(sorted(found))}); "
                      "name one with meta.tether.threshold: params.yaml:KEY")
    if _num(metrics.get("threshold")):
        return {"value": metrics["threshold"], "source": "metrics: threshold"}, None
    return None, None


def threshold_fix(art_path: str, is_dir: bool) -> str:
    where = (f"write {art_path}/threshold.json ({{\"value\": …}}) from a stage, " if is_dir else "")
    return (where + "list the param under the `params:` of the stage that evaluates the model (e.g. "
            "`evaluate.threshold` in params.yaml), write a `threshold` key into a declared metrics file, "
            "or point to it: `meta: {tether: {threshold: params.yaml:evaluate.threshold}}` on the artifact")


def _unstaged_weights(commit: str, path: str, ids: dict, small: dict) -> list[dict]:
    """A model no stage produces or reads: added with `dvc add` (its `.dvc` file at the commit
    names the object) or a file/directory kept in git."""
    raw = small.get(f"{commit}:{path}.dvc")
    if raw is not None:
        try:
            outs = (load_yaml(raw.decode()) or {}).get("outs") or []
            out = outs[0] if isinstance(outs, list) and outs and isinstance(outs[0], dict) else {}
        except Exception:  # noqa: BLE001 - an unreadable .dvc file names no weights
            out = {}
        md5 = out.get("md5")
        if isinstance(md5, str) and md5:
            return [{"path": path, "md5": md5, "size": out.get("size"), "sha256": None, "stage": None,
                     "role": "model", "dvc_file": f"{path}.dvc"}]
    gid = ids.get(f"{commit}:{path}")
    if gid:
        return [{"path": path, "git_id": gid, "md5": None, "size": None, "sha256": None,
                 "stage": None, "role": "model"}]  # weights kept in git
    return []


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dig(values, key):
    node = values
    for k in key:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node


# -- the attestation -------------------------------------------------------------------------
def attestation_problems(derived: dict, attested: dict, partial: bool = False) -> list[str]:
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
        bad = sorted(k for k, v in am.items() if _num(v) and k in dm and _num(dm[k]) and abs(dm[k] - v) > 1e-9)
        if not partial:
            bad += sorted(k for k, v in am.items() if _num(v) and dm and k not in dm)
        if bad:
            out.append(f"metrics differ from the commit's metrics files ({', '.join(bad[:4])})")
    else:
        out.append("the message's metrics are not an object")
    return out


def _moved_between_weights_and_data(ac: dict, dc: dict) -> bool:
    """The message and the commit name the same files with the same md5s, only some under the
    other part: an older tether listed a training stage's side output (model_params.json) as
    data. Not a disagreement about the release."""
    try:
        said = {e["path"]: e.get("md5") for part in ("weights", "data") for e in ac.get(part) or []}
    except (TypeError, KeyError, AttributeError):
        return False
    have = {e["path"]: e.get("md5") for part in ("weights", "data") for e in dc[part]}
    return said == have


def merge(derived: dict, attested: dict | None, tag_meta: dict) -> dict:
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
