"""DIR/weight.json: the canary's traffic share, written by deploy beside the `current` it
belongs to and read by `tether serve --canary-target`."""

from __future__ import annotations

import json
import os
from pathlib import Path

WEIGHT_FILE = "weight.json"


def write_weight_file(target: Path, env: str, release_id: str, weight: int, commit: str) -> None:
    """DIR/weight.json, replaced in one rename(2), next to the `current` it belongs to."""
    tmp = target / f".{WEIGHT_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"env": env, "release": release_id, "weight": weight, "commit": commit}) + "\n")
    os.replace(tmp, target / WEIGHT_FILE)


def read_weight_file(target: Path) -> tuple[str, int] | None:
    """(release id, weight) from DIR/weight.json, or None when it is missing or malformed (the
    canary then takes no traffic)."""
    try:
        data = json.loads((target / WEIGHT_FILE).read_text())
        release, weight = data["release"], data["weight"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(release, str) or isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        return None
    return release, weight
