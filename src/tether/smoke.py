"""The smoke test: the release, materialised on its own, reproduces what evaluate recorded."""

from __future__ import annotations

from pathlib import Path

from tether import materialise
from tether.dvcstore import DvcStore
from tether.errors import GateFailed
from tether.gitrepo import Git
from tether.workspace import Settings


def eval_data_path(manifest: dict, settings: Settings) -> str:
    """The frozen eval slice: `meta.tether.eval_data` in dvc.yaml, else the one data output
    whose name says eval."""
    configured = settings.eval_data
    if configured:
        return configured
    cands = [e["path"] for e in manifest["components"]["data"] if "eval" in Path(e["path"]).name]
    if len(cands) != 1:
        raise GateFailed(
            "cannot tell which data file is the frozen eval slice for the smoke test",
            hint="set artifacts.<model>.meta.tether.eval_data in dvc.yaml",
        )
    return cands[0]


def read_table(path: Path):
    import pandas as pd

    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def run_smoke(git: Git, store: DvcStore, manifest: dict, settings: Settings, dest: Path) -> str:
    from tether.bundle import load_bundle, smoke_test

    eval_path = eval_data_path(manifest, settings)
    entries = materialise.needed(manifest, data_paths=(eval_path,))
    materialise.ensure_cached(store, entries)
    materialise.materialise(git, store, manifest, dest, entries)
    bundle = load_bundle(dest / manifest["artifact"]["path"])
    result = smoke_test(bundle, read_table(dest / eval_path))
    return f"bundle reproduces its eval predictions and metrics ({_fmt(result)})"


def _fmt(result) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in list(result.items())[:4])
    return str(result)
