"""Config values compared as Hydra keeps them (strict types, key by key). Used by confplan.py
(the deciding) and `tether conf apply` (the check). Writing a value in Hydra's override grammar
needs Hydra's own parser, so it lives in adapters/hydraconf.py and reaches confplan as a function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


# -- comparing ----------------------------------------------------------------------------
def strict_equal(a: Any, b: Any) -> bool:
    """Equal values of equal types: 2 is not 2.0 and True is not 1 (YAML would write them
    differently, and Hydra keeps the type)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@dataclass
class LeafDiff:
    changed: list[tuple[str, object, object]] = field(default_factory=list)  # key, conf/, params
    added: list[tuple[str, object]] = field(default_factory=list)            # only in params
    removed: list[tuple[str, object]] = field(default_factory=list)          # only in conf/
    reshaped: list[tuple[str, object, object]] = field(default_factory=list)  # mapping vs value

    @property
    def count(self) -> int:
        return len(self.changed) + len(self.added) + len(self.removed) + len(self.reshaped)


def leaf_diff(conf: Mapping, params: Mapping, prefix: str = "", out: LeafDiff | None = None) -> LeafDiff:
    out = out if out is not None else LeafDiff()
    for k in list(conf) + [k for k in params if k not in conf]:
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in params:
            out.removed.append((key, conf[k]))
        elif k not in conf:
            if isinstance(params[k], Mapping) and params[k]:
                leaf_diff({}, params[k], key, out)  # `+a.b=1`, the way one writes it after -S
            else:
                out.added.append((key, params[k]))
        else:
            a, b = conf[k], params[k]
            if isinstance(a, Mapping) and isinstance(b, Mapping) and (a or b):
                leaf_diff(a, b, key, out)
            elif isinstance(a, Mapping) != isinstance(b, Mapping):
                out.reshaped.append((key, a, b))
            elif not strict_equal(a, b):
                out.changed.append((key, a, b))
    return out


def describe(diff: LeafDiff) -> list[str]:
    lines = [f"{k}: params.yaml has {b!r}, conf/ composes {a!r}" for k, a, b in diff.changed + diff.reshaped]
    lines += [f"{k}: params.yaml has {b!r}, conf/ composes (missing)" for k, b in diff.added]
    lines += [f"{k}: params.yaml has (missing), conf/ composes {a!r}" for k, a in diff.removed]
    return sorted(lines)
