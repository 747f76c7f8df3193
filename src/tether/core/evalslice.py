"""Which of a release's data outputs is its frozen eval slice (what the smoke test predicts).
Pure: the manifest and the model's settings in, a path out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tether.errors import GateFailed


class _EvalSettings(Protocol):
    """The workspace's typed Settings (anything with an `eval_data` attribute)."""

    @property
    def eval_data(self) -> str | None: ...


def eval_path_or_none(manifest: dict, settings: _EvalSettings | dict[str, Any] | None) -> str | None:
    """`meta.tether.eval_data` in dvc.yaml, else the one data output whose name says eval."""
    # Settings in the workspace; the release's own raw `meta.tether` in a worker
    if settings is None or isinstance(settings, dict):
        configured = (settings or {}).get("eval_data")
    else:
        configured = settings.eval_data
    if configured:
        return configured
    cands = [e["path"] for e in manifest["components"]["data"] if "eval" in Path(e["path"]).name]
    return cands[0] if len(cands) == 1 else None


def eval_data_path(manifest: dict, settings: _EvalSettings | dict[str, Any] | None) -> str:
    """The frozen eval slice: `meta.tether.eval_data` in dvc.yaml, else the one data output
    whose name says eval."""
    found = eval_path_or_none(manifest, settings)
    if found is None:
        raise GateFailed(
            "cannot tell which data file is the frozen eval slice for the smoke test",
            hint="set artifacts.<model>.meta.tether.eval_data in dvc.yaml",
        )
    return found
