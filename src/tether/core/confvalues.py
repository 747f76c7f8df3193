"""Config values: compared as Hydra keeps them (strict types, key by key) and written in Hydra's
override grammar (`evaluate.threshold=0.7`, `'a b'`, `[1,2]`), each written value checked by
Hydra's own parser. Used by confplan.py (the deciding) and `tether conf apply` (the check).
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


# -- Hydra's override grammar -------------------------------------------------------------
def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar, checked by Hydra's own parser."""
    text = _hydra_value(value)
    if not strict_equal(_parse(f"k={text}").value(), value):
        text = _quote(str(value)) if isinstance(value, str) else text
        if not strict_equal(_parse(f"k={text}").value(), value):
            raise ValueError(f"cannot write {value!r} as a Hydra override value")
    return text


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not (isinstance(value, float) and math.isinf(value)) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return value if value.strip() == value and value else _quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {value!r} as a Hydra override value")


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse(text: str) -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([text])[0]


def override_text(prefix: str, key: str, value: Any) -> str:
    text = f"{prefix}{key}={hydra_value(value)}"
    parsed = _parse(text)  # raises on a key Hydra's grammar does not take
    if parsed.key_or_group != key:
        raise ValueError(f"{key!r} is not a key Hydra's override grammar can name")
    return text
