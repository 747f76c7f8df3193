"""Stages read their hyperparameters from params.yaml, the composition of conf/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Canonical JSON (sorted keys, fixed float repr): same inputs give the same bytes."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
