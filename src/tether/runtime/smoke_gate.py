"""Promote's smoke gate: the release materialised on its own with its frozen eval slice, then
smoke-tested in a worker the way `tether serve` runs it (the check itself: runtime/smoke.py)."""

from __future__ import annotations

from pathlib import Path

from tether.adapters import materialise
from tether.adapters.dvcstore import DvcStore
from tether.adapters.gitrepo import Git
from tether.core.settings import Settings
from tether.core.evalslice import eval_data_path
from tether.servedir.stamp import write_stamp


def run_smoke(git: Git, store: DvcStore, manifest: dict, settings: Settings, dest: Path) -> str:
    """Materialise the release with its eval slice into `dest` and smoke-test it in a worker."""
    from tether.runtime.workerproc import smoke_in_worker

    eval_path = eval_data_path(manifest, settings)
    entries = materialise.needed(manifest, data_paths=(eval_path,))
    materialise.ensure_cached(store, entries)
    placed = materialise.materialise(git, store, manifest, dest, entries)
    entries = [{**e, "sha256": e.get("sha256") or placed.get(e["path"])} for e in entries]
    write_stamp(dest, manifest, entries, "")
    return smoke_in_worker(dest, eval_path)
