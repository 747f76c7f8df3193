"""What a release reads from its workspace beside the derivation of its commit
(registry/derive.py, which builds the five components): the model's DVC graph, the sources its
stages run without declaring them, the threshold, metrics, feature schema and runtime the
pipeline wrote, and the runtime part of the manifest.

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
from tether.core import manifest as mf
from tether.digest import sha256_bytes
from tether.adapters.workspace import Workspace


@dataclass(frozen=True)
class Facts:
    graph: dvcgraph.ModelGraph
    undeclared: dict[str, dict[str, str]]  # stage -> {path: why}
    threshold: dict | None  # {"value": …, "source": …}, the shape of mf.ThresholdPart
    metrics: mf.Metrics
    feature_schema: mf.FeatureSchema
    runtime: mf.Runtime


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
        value = dvcgraph.param(graph.params, ("evaluate", "threshold"))
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


def runtime_component(runtime: mf.Runtime, lock_file: tuple[str, str] | None = None) -> mf.Runtime:
    """The runtime part: what the pipeline's runtime file records; without a lock digest there,
    the repository's lock file (`requirements.lock`, …: `lock_file` is (path, sha256)); only
    without either, the digest of the recorded packages."""
    if not runtime.get("lock_sha256") and lock_file is not None:
        return {**runtime, "lock_file": lock_file[0], "lock_sha256": lock_file[1]}
    pkgs = runtime.get("packages") or {}
    lock = runtime.get("lock_sha256") or sha256_bytes(json.dumps(pkgs, sort_keys=True).encode())
    return {**runtime, "lock_sha256": lock}


