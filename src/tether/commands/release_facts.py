"""Derive a model version's five components from the DVC graph of a workspace or a commit.

Nothing is typed in by hand: weights are the outputs under the model artifact's path, data is
everything DVC-tracked upstream, code is every git-tracked source the stages depend on, params
are what the stages declare, and the threshold is what the pipeline wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tether.core import codedeps
from tether.core import dvcgraph
from tether.digest import sha256_bytes, sha256_file
from tether.core.settings import load_yaml
from tether.adapters.workspace import Workspace


@dataclass(frozen=True)
class Facts:
    graph: dvcgraph.ModelGraph
    undeclared: dict  # stage -> {path: why}
    threshold: dict | None
    metrics: dict
    feature_schema: dict
    runtime: dict


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def gather(ws: Workspace, model: str) -> Facts:
    graph = dvcgraph.model_graph(ws.dvc_yaml, ws.dvc_lock(), model)
    settings = ws.settings(model)

    def read(rel: str) -> str | None:
        p = ws.root / rel
        try:
            return p.read_text() if p.is_file() else None
        except (OSError, UnicodeDecodeError):
            return None

    undeclared = {s.name: u for s in graph.stages if (u := codedeps.undeclared_sources(s, read))}
    art = ws.root / graph.artifact.path
    threshold = _read_json(art / settings.threshold_file)
    if threshold is not None and not isinstance(threshold.get("value"), (int, float)):
        threshold = None
    if threshold is None:
        value = dvcgraph_param(graph.params, ("evaluate", "threshold"))
        if isinstance(value, (int, float)):
            threshold = {"value": value, "source": "params: evaluate.threshold"}
    return Facts(
        graph=graph,
        undeclared=undeclared,
        threshold=threshold,
        metrics=_read_json(art / settings.metrics_file) or {},
        feature_schema=_read_json(art / settings.feature_schema_file) or {},
        runtime=_read_json(art / settings.runtime_file) or {},
    )


def dvcgraph_param(params: dict, key: tuple[str, ...]):
    for values in params.values():
        node = values
        for k in key:
            if not isinstance(node, dict) or k not in node:
                node = None
                break
            node = node[k]
        if node is not None:
            return node
    # dvc.lock stores dotted keys when a stage declares `evaluate.threshold` directly
    for values in params.values():
        if ".".join(key) in (values or {}):
            return values[".".join(key)]
    return None


def file_entries(ws: Workspace, entries, roles: dict[str, str] | None = None) -> list[dict]:
    out = []
    for e in entries:
        p = ws.root / e.path
        entry = {
            "path": e.path,
            "md5": e.md5,
            "size": e.size,
            "sha256": sha256_file(p) if p.is_file() else None,
            "stage": e.stage,
        }
        if roles is not None:
            entry["role"] = roles.get(Path(e.path).name, "model")
        out.append(entry)
    return out


def mark_git_tracked(ws: Workspace, commit: str, entries: list[dict]) -> list[dict]:
    """A data dep kept in git (a small CSV, say) travels with the tree, not the DVC remote."""
    if not entries:
        return entries
    tracked = ws.git.ls_tree(commit, [e["path"] for e in entries])
    for e in entries:
        if e["path"] in tracked:
            e["git_id"] = tracked[e["path"]][1]
    return entries


def weight_roles(settings) -> dict[str, str]:
    """Which files under the artifact are not the fitted model itself: a threshold or metrics
    change is not a weights change (docs/design.md, "Command line": threshold alone is a patch)."""
    return {
        settings.threshold_file: "threshold",
        settings.metrics_file: "metrics",
        settings.feature_schema_file: "schema",
        settings.runtime_file: "runtime",
        settings.bundle_manifest_file: "bundle-manifest",
    }


def threshold_params(graph: dvcgraph.ModelGraph, threshold_file: str) -> list[str]:
    """The params of the stage that writes the threshold: changing only those moves the
    threshold, not the model."""
    for st in graph.stages:
        if any(o.path.endswith("/" + threshold_file) for o in st.outs):
            return sorted(k for values in st.params.values() for k in (values or {}))
    return []


def code_entries(ws: Workspace, commit: str, paths: tuple[str, ...]) -> list[dict]:
    if not paths:
        return []
    tree = ws.git.ls_tree(commit, list(paths))
    out = []
    for path in paths:
        otype, oid = tree.get(path, ("missing", None))
        out.append({"path": path, "type": otype, "git_id": oid})
    return out


def params_component(ws: Workspace, commit: str, graph: dvcgraph.ModelGraph) -> dict:
    path = "params.yaml"
    full = ws.root / path
    values = load_yaml(full.read_text()) if full.exists() else {}
    conf = ws.git.ls_tree(commit, ["conf"]).get("conf")
    return {
        "path": path,
        "sha256": sha256_file(full) if full.exists() else None,
        "values": values,
        "used": graph.params,
        "config": {"dir": "conf", "tree": conf[1] if conf else None},
    }


def runtime_component(runtime: dict, lock_file: tuple[str, str] | None = None) -> dict:
    """The runtime part: what the pipeline's runtime file records; without a lock digest there,
    the repository's lock file (`requirements.lock`, …: `lock_file` is (path, sha256)); only
    without either, the digest of the recorded packages."""
    if not runtime.get("lock_sha256") and lock_file is not None:
        return {**runtime, "lock_file": lock_file[0], "lock_sha256": lock_file[1]}
    pkgs = runtime.get("packages") or {}
    lock = runtime.get("lock_sha256") or sha256_bytes(json.dumps(pkgs, sort_keys=True).encode())
    return {**runtime, "lock_sha256": lock}


