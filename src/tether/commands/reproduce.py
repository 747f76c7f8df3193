"""`tether reproduce REF`: rebuild a release from its commit and prove it bit for bit.

In a temporary clone at the release commit (the workspace, its cache and its refs are never
touched): fetch from the DVC remote only the release's inputs (data the pipeline reads that no
stage produces), each verified against the md5 its dvc.lock records; run `dvc repro --force`;
compare every output with the manifest (sha256 where recorded, else DVC's md5, file by file inside
a directory), and the runtime now with the one the release recorded. The temporary clone is
removed whatever happens. Verdicts: reprocompare.py.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tether.core import dvcgraph
from tether.core import manifest as mf
from tether.adapters import materialise
from tether.core import reprocompare as rc
from tether.adapters.cmd import CommandFailed, run
from tether.digest import sha256_file, tree_sha256_of
from tether.adapters.dvccache import is_dir
from tether.adapters.dvcstore import DvcStore
from tether.errors import StorageError, TetherError
from tether.core.refs import parse_ref
from tether.registry.registry import Registry
from tether.core.settings import Settings
from tether.adapters.workspace import Workspace

Progress = Callable[[str], None]


@dataclass
class Reproduction:
    release: str
    commit: str
    inputs: list[str]
    stages: list[str]
    checks: list[rc.OutputCheck]
    verdict: rc.Verdict
    recorded_runtime: mf.Runtime
    current_runtime: mf.Runtime
    seconds: float

    @property
    def identical(self) -> bool:
        return self.verdict.identical

    def as_dict(self) -> dict:
        return {"release": self.release, "commit": self.commit, "identical": self.identical,
                "inputs": self.inputs, "stages": self.stages, "seconds": round(self.seconds, 1),
                "parts": {p: v.as_dict() for p, v in self.verdict.parts.items()},
                "outputs": [c.as_dict() for c in self.checks],
                "runtime": {"recorded": self.recorded_runtime, "current": self.current_runtime,
                            "differences": self.verdict.runtime}}


class ReproduceFailed(TetherError):
    """The pipeline itself failed at the release commit (exit 1: not a digest, not storage)."""


def reproduce(ws: Workspace, ref_text: str, model: str | None = None, progress: Progress | None = None) -> Reproduction:
    say = progress or (lambda _msg: None)
    rel = Registry(ws, messages=False).resolve(parse_ref(ref_text), model)
    manifest = rel.require_trusted("reproduced")
    remote = DvcStore(ws.root).remote_settings()  # read before anything is made: no remote, exit 7
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tether-reproduce-") as tmp:
        root = Path(tmp) / "repo"
        say(f"cloning {rel.tag} (commit {rel.commit[:12]}) into a temporary directory …")
        git = ws.git.clone_no_checkout(str(ws.root), root, hardlinks=False)
        git.checkout(rel.commit, detach=True)
        clone = Workspace(root, git)
        store = DvcStore(root)
        try:
            store.use_remote(*remote, own_cache=True)
            graph = dvcgraph.model_graph(clone.dvc_yaml, clone.dvc_lock(), rel.name.model)
            inputs = fetch_inputs(store, manifest, graph, root, say)
            stages = run_pipeline(root, say)
            say(f"comparing every output with the manifest of {rel.tag} …")
            result = compare(clone, store, manifest, graph, inputs)
        finally:
            store.close()
    checks, verdict, current = result
    return Reproduction(rel.tag, rel.commit, [e["path"] for e in inputs], stages, checks, verdict,
                        manifest.get("runtime") or {}, current, time.monotonic() - started)


def input_entries(manifest: dict, graph: dvcgraph.ModelGraph) -> list[dict]:
    """The manifest's data entries no stage of the pipeline produces and git does not hold: what
    `dvc repro` reads and cannot rebuild. A URL or outside path is read where it is."""
    def produced(path: str) -> bool:
        return any(path == out or dvcgraph.under(path, out) for out in graph.producers)

    return [e for e in manifest["components"]["data"]
            if not produced(e["path"]) and not e.get("git_id") and not e.get("external")]


def fetch_inputs(store: DvcStore, manifest: dict, graph: dvcgraph.ModelGraph, root: Path, say: Progress) -> list[dict]:
    entries = input_entries(manifest, graph)
    untracked = sorted(e["path"] for e in entries if not e.get("md5"))
    if untracked:
        raise StorageError(f"the release's inputs {', '.join(untracked)} are tracked neither by git nor by DVC: "
                           "nothing can restore them", hint="track raw data with `dvc add` and release again")
    if not entries:
        say("inputs: none to fetch (every data file is produced by a stage or kept in git)")
        return []
    say(f"fetching {len(entries)} input(s) from the DVC remote: {', '.join(e['path'] for e in entries)} …")
    by_md5 = {e["md5"]: e["path"] for e in entries}
    absent = store.missing_on_remote(by_md5)
    if absent:
        names = ", ".join(sorted(by_md5[m] for m in absent))
        raise StorageError(f"the DVC remote lacks the release's input(s) {names}: it cannot be reproduced",
                           hint="push them from a workspace that has them (dvc push), then run reproduce again")
    materialise.ensure_cached(store, entries)
    materialise.place_outputs(store, entries, root)
    for e in entries:  # placed read-only; a workspace's files are writable, and DVC may re-link them
        target = root / e["path"]
        for p in [target, *target.rglob("*")] if target.is_dir() else [target]:
            if p.is_file():
                os.chmod(p, 0o644)
    return entries


def run_pipeline(root: Path, say: Progress) -> list[str]:
    """`dvc repro --force`: every stage runs, none is taken from a cache."""
    say("running `dvc repro --force` in the clone …")
    env = {"DVC_NO_ANALYTICS": "1"}
    try:
        res = run([sys.executable, "-m", "dvc", "repro", "--force"], cwd=root, env=env)
    except CommandFailed as exc:
        raise ReproduceFailed(f"`dvc repro --force` failed at the release commit: {exc.message}",
                              hint="the pipeline does not run in this environment; see the runtime the release "
                                   "recorded (tether show REF)") from None
    return [line.split("'")[1] for line in res.stdout.splitlines() if line.startswith("Running stage '")]


def compare(clone: Workspace, store: DvcStore, manifest: dict, graph: dvcgraph.ModelGraph,
            inputs: list[dict]) -> tuple[list[rc.OutputCheck], rc.Verdict, dict]:
    new_lock = {o.path: o.md5 for st in dvcgraph.lock_stages(clone.dvc_lock()).values() for o in st.outs}
    skip = {e["path"] for e in inputs}
    checks = []
    for weights, entries in ((True, manifest["components"]["weights"]), (False, manifest["components"]["data"])):
        for e in entries:
            if e["path"] in skip or not e.get("md5") or e.get("git_id") or e.get("external"):
                continue
            checks.append(check_output(store, clone.root, e, rc.part_of(e, weights), new_lock.get(e["path"])))
    settings = clone.settings(manifest["model"])
    art = clone.root / manifest["artifact"]["path"]
    metrics = reproduced_metrics(clone, graph, art / settings.metrics_file)
    threshold = (_read_json(art / settings.threshold_file) or {}).get("value") if art.is_dir() else None
    current = current_runtime(art, settings, manifest.get("runtime") or {})
    verdict = rc.decide(checks, manifest, metrics, threshold,
                        rc.runtime_diff(manifest.get("runtime") or {}, current))
    return checks, verdict, current


def reproduced_metrics(clone: Workspace, graph: dvcgraph.ModelGraph, art_metrics: Path) -> mf.Metrics | None:
    """The metrics the rebuilt pipeline wrote, gathered as the release's were (derive.py): the
    metrics file under the artifact, then every metrics file its stages declare, wherever it is
    (an evaluation's reports/metrics.json beside the model, say). None when none was written."""
    from tether.registry import derive

    found = _read_json(art_metrics) if art_metrics.is_file() else None
    metrics: mf.Metrics | None = dict(found) if found is not None else None
    for rel in derive.metric_paths(clone.dvc_yaml, graph):
        other = _read_json(clone.root / rel)
        if other is None or clone.root / rel == art_metrics:
            continue
        metrics = metrics if metrics is not None else {}
        for k, v in mf.flatten(other).items():
            metrics.setdefault(k, v)
    return metrics


def check_output(store: DvcStore, root: Path, entry: dict, part: str, new_md5: str | None) -> rc.OutputCheck:
    path = root / entry["path"]
    kind = rc.digest_kind(entry)
    expected = entry.get("sha256") if kind == "sha256" else entry["md5"]
    if not path.exists():
        return rc.OutputCheck(entry["path"], part, kind, expected, None, (entry["path"] + " (not produced)",))
    actual: str | None
    if kind == "sha256":
        actual = tree_sha256_of(path)[0] if path.is_dir() else sha256_file(path)
    else:
        actual = new_md5
    if actual == expected:
        return rc.OutputCheck(entry["path"], part, kind, expected, actual)
    files: tuple[str, ...] = (entry["path"],)
    if is_dir(entry["md5"]):
        files = rc.listing_diff(_listing(store, entry["md5"], remote=True),
                                _listing(store, new_md5, remote=False) if new_md5 else None, entry["path"])
    return rc.OutputCheck(entry["path"], part, kind, expected, actual, files)


def _listing(store: DvcStore, md5: str, remote: bool) -> list[dict] | None:
    try:
        return store.dir_entries(md5)
    except (FileNotFoundError, TetherError):
        pass
    try:
        return store.remote_dir_entries(md5) if remote else None
    except TetherError:
        return None


def current_runtime(art: Path, settings: Settings, recorded: mf.Runtime) -> mf.Runtime:
    """The runtime the pipeline just ran with: the runtime file it wrote, if it writes one; else
    this interpreter and the versions of the packages the release recorded."""
    written = _read_json(art / settings.runtime_file) if art.is_dir() else None
    if written:
        return written
    packages: dict[str, str | None] = {}
    for name in recorded.get("packages") or {}:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "packages": packages}


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
