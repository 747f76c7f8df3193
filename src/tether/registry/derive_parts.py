"""The builders of a derivation (derive.py): one per component of the manifest, each reading what
it needs from one commit (git objects already batched by `derive_many`, DVC objects by md5)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from tether.core import dvcgraph
from tether.core import paths
from tether.core import manifest as mf
from tether.digest import sha256_bytes
from tether.core.settings import Settings, load_yaml


class CommitFiles:
    """Small files at one commit: from git (the batched `ids`/`small`), else from the DVC
    object dvc.lock names. Every DVC object asked for and not readable lands in `unresolved`."""

    def __init__(self, commit: str, lock: dict, ids: dict[str, str | None], small: dict[str, bytes | None],
                 read_object: Callable[[str], bytes | None]) -> None:
        self.commit = commit
        self.ids = ids
        self.small = small
        self.read_object = read_object
        self.outs: dict[str, str] = {o.path: o.md5 for st in dvcgraph.lock_stages(lock).values()
                                     for o in st.outs if o.md5}
        self.unresolved: list[str] = []

    def git_id(self, path: str) -> str | None:
        return self.ids.get(f"{self.commit}:{path}")

    def read(self, path: str) -> bytes | None:
        """A small file at the commit: from git, else from the DVC object dvc.lock names."""
        spec = f"{self.commit}:{path}"
        if self.ids.get(spec):
            return self.small.get(spec)
        if path in self.outs:
            return self._obj(self.outs[path])
        for out_path, md5 in self.outs.items():  # a file inside a directory output
            if md5.endswith(".dir") and dvcgraph.under(path, out_path):
                listing = self._obj(md5)
                if listing is None:
                    return None
                try:
                    rel = path[len(out_path) + 1:]
                    child = next((c["md5"] for c in json.loads(listing) if c.get("relpath") == rel), None)
                except (ValueError, TypeError, AttributeError):
                    return None
                return self._obj(child) if child else None
        return None

    def _obj(self, md5: str) -> bytes | None:
        data = self.read_object(md5)
        if data is None:
            self.unresolved.append(md5)
        return data

    def read_json(self, path: str) -> Any:
        raw = self.read(path)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None


# -- weights, data, code -----------------------------------------------------------------------
def data_part(graph: dvcgraph.ModelGraph, files: CommitFiles) -> list[mf.OutputEntry]:
    data = []
    for e in graph.data:
        entry: mf.OutputEntry = {"path": e.path, "md5": e.md5, "size": e.size, "sha256": None, "stage": e.stage}
        if e.external:
            entry["external"] = True  # a URL or a path outside the repository: pinned, never copied
        gid = None if e.external else files.git_id(e.path)
        if gid:
            entry["git_id"] = gid
        data.append(entry)
    return data


def weights_part(graph: dvcgraph.ModelGraph, settings: Settings, files: CommitFiles) -> list[mf.OutputEntry]:
    roles = {settings.threshold_file: "threshold", settings.metrics_file: "metrics",
             settings.feature_schema_file: "schema", settings.runtime_file: "runtime",
             settings.bundle_manifest_file: "bundle-manifest"}
    weights = []
    for e in graph.weights:
        w: mf.OutputEntry = {"path": e.path, "md5": e.md5, "size": e.size, "sha256": None, "stage": e.stage,
                             "role": roles.get(Path(e.path).name, "model")}
        if gid := files.git_id(e.path):
            w["git_id"] = gid  # a model kept in git and read by a stage: git holds its bytes
        weights.append(w)
    if not weights:
        weights = _unstaged_weights(files.commit, graph.artifact.path, files.ids, files.small)
    return weights


def _unstaged_weights(commit: str, path: str, ids: dict[str, str | None], small: dict[str, bytes | None]) -> list[mf.OutputEntry]:
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


def code_part(graph: dvcgraph.ModelGraph, files: CommitFiles) -> list[mf.CodeEntry]:
    return [{"path": p, "type": "blob" if files.git_id(p) else "missing", "git_id": files.git_id(p)}
            for p in graph.code]


# -- params, metrics, threshold ----------------------------------------------------------------
def params_values(params_blob: bytes | None) -> tuple[dict, str | None]:
    """(params.yaml's values, problem)."""
    if params_blob is None:
        return {}, None
    try:
        return load_yaml(params_blob.decode()) or {}, None
    except Exception:  # noqa: BLE001
        return {}, "params.yaml at its commit is not valid YAML"


def params_part(graph: dvcgraph.ModelGraph, params_blob: bytes | None, values: dict,
                files: CommitFiles) -> mf.ParamsPart:
    return {"path": "params.yaml", "sha256": sha256_bytes(params_blob) if params_blob is not None else None,
            "values": values, "used": graph.params,
            "config": {"dir": "conf", "tree": files.git_id("conf")}}


def metrics_found(art_path: str, settings: Settings, metric_paths: list[str], files: CommitFiles) -> dict:
    """Every metric the model's metrics files hold: the artifact's own file first, then the
    others, flattened (the first file to name a key wins)."""
    metrics: dict = {}
    mj = files.read_json(f"{art_path}/{settings.metrics_file}")
    if isinstance(mj, dict):
        metrics.update(mj)
    for p in metric_paths:
        if p == f"{art_path}/{settings.metrics_file}":
            continue
        found = files.read_json(p)
        if isinstance(found, dict):
            for k, v in mf.flatten(found).items():
                metrics.setdefault(k, v)
    return metrics


def recorded_metrics(metrics: dict) -> mf.Metrics:
    """What the manifest records: named numbers and strings."""
    return {k: v for k, v in metrics.items() if isinstance(k, str) and (num(v) or isinstance(v, str))}


def threshold_part(found: dict | None, graph: dvcgraph.ModelGraph, settings: Settings) -> mf.ThresholdPart:
    """The threshold (or value None), with the params of the stage that writes the threshold
    file: changing only those moves the threshold, not the model."""
    tkeys = sorted(k for st in graph.stages for values in st.params.values() for k in (values or {})
                   if any(o.path.endswith("/" + settings.threshold_file) for o in st.outs))
    # a threshold.json's own keys are kept as written
    return cast(mf.ThresholdPart, {**(found or {"value": None, "source": None}), "params": tkeys})


def find_threshold(settings: Settings, graph: dvcgraph.ModelGraph, params_values: dict, files: CommitFiles,
                   metrics: dict) -> tuple[dict | None, str | None]:
    """(threshold, problem). Where users keep it, first match wins:
    1. `meta.tether.threshold: FILE:KEY` (e.g. `params.yaml:evaluate.threshold`), authoritative;
    2. `<artifact>/threshold.json` ({"value": …}) when the artifact is a directory;
    3. a param named `threshold` (`evaluate.threshold`, `train.threshold`) of a stage in the
       model's graph, the stages that evaluate the model included; one such key, else ambiguous;
    4. a `threshold` key in the metrics the model's stages declare."""
    if settings.threshold:
        return _pointed_threshold(settings.threshold, params_values, files)
    art = graph.artifact
    tj = files.read_json(f"{art.path}/{settings.threshold_file}")
    if isinstance(tj, dict) and num(tj.get("value")):
        return {**tj, "source": tj.get("source") or f"{art.path}/{settings.threshold_file}"}, None
    value = dvcgraph.param(graph.params, ("evaluate", "threshold"))
    if num(value):
        return {"value": value, "source": "params: evaluate.threshold"}, None
    found = {k: v for values in graph.params.values() for k, v in mf.flatten(values or {}).items()
             if k.rsplit(".", 1)[-1] == "threshold" and num(v)}
    if len(found) == 1:
        k, v = next(iter(found.items()))
        return {"value": v, "source": f"params: {k}"}, None
    if len(found) > 1:
        return None, (f"several params could be the threshold ({', '.join(sorted(found))}); "
                      "name one with meta.tether.threshold: params.yaml:KEY")
    if num(metrics.get("threshold")):
        return {"value": metrics["threshold"], "source": "metrics: threshold"}, None
    return None, None


def _pointed_threshold(pointer: str, params_values: dict, files: CommitFiles) -> tuple[dict | None, str | None]:
    """The threshold `meta.tether.threshold: FILE:KEY` names."""
    file, _, key = str(pointer).partition(":")
    keys = tuple(k for k in key.split(".") if k)
    if not file or not keys or paths.problem(file):
        return None, (f"meta.tether.threshold {pointer!r} is not FILE:KEY "
                      "(e.g. params.yaml:evaluate.threshold)")
    file = paths.normalise(file)
    doc: dict | None
    if file == "params.yaml":
        doc = params_values
    else:
        raw = files.read(file)
        try:
            doc = load_yaml(raw.decode()) if raw is not None else None  # YAML reads JSON too
        except Exception:  # noqa: BLE001
            doc = None
    value = _dig(doc, keys) if isinstance(doc, dict) else None
    if isinstance(value, dict) and num(value.get("value")):
        value = value["value"]
    if not num(value):
        return None, None  # a missing part: the fix names the pointer
    return {"value": value, "source": f"{file}:{'.'.join(keys)}"}, None


def pointer_file(meta: dict) -> str | None:
    """The file a `meta.tether.threshold: FILE:KEY` pointer names, if it is a safe path."""
    raw = ((meta or {}).get("tether") or {}).get("threshold") if isinstance(meta, dict) else None
    file = str(raw).partition(":")[0] if raw else ""
    return paths.normalise(file) if file and paths.problem(file) is None else None


def threshold_fix(art_path: str, is_dir: bool) -> str:
    where = (f"write {art_path}/threshold.json ({{\"value\": …}}) from a stage, " if is_dir else "")
    return (where + "list the param under the `params:` of the stage that evaluates the model (e.g. "
            "`evaluate.threshold` in params.yaml), write a `threshold` key into a declared metrics file, "
            "or point to it: `meta: {tether: {threshold: params.yaml:evaluate.threshold}}` on the artifact")


def num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dig(values: Any, key: tuple[str, ...]) -> Any:
    node = values
    for k in key:
        if not isinstance(node, dict) or k not in node:
            return None
        node = node[k]
    return node
