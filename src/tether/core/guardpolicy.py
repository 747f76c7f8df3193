"""The canary guard's policy, `meta.tether.guard` in dvc.yaml: its steps and thresholds, typed
and validated where they enter (`parse_policy`). Apart from tether.core.guard (the decision core,
which re-exports both names) so that loading a model's settings, which every deploy and promote
does, does not load the guard's statistics. Pure; no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tether.errors import UsageError


@dataclass(frozen=True)
class GuardPolicy:
    """`meta.tether.guard` in dvc.yaml. Thresholds are maxima; a check with no data to compare
    (no eval scores recorded, too few stable scores) is reported as skipped, never as passed."""

    interval: float = 30.0  # seconds between samples
    min_samples: int = 100  # canary requests since the step began before any decision
    failed_checks: int = 1  # failed samples tolerated in a row; one more rolls back
    steps: tuple[int, ...] = (10, 25, 50, 100)  # traffic weights (percent), last one 100
    max_error_rate: float = 0.005  # the ceiling: a canary at it is rolled back (tested against half of it)
    alpha: float = 0.01  # design false-rollback rate of an identical release (error ratio + latency)
    beta: float = 0.05  # design chance that a step passes a canary at error_ratio × the stable arm's errors
    error_ratio: float = 2.0  # the error-rate ratio (canary / stable) the test is designed to catch
    error_floor: float = 0.0001  # an error rate too small to matter: shown under it, a step passes
    max_p95_latency: float = 0.2  # seconds
    max_psi: float = 0.25
    max_ks: float = 0.2
    promote: str = "auto"  # auto: promote after the last step; manual: wait for a human
    rollback: str = "auto"  # auto: roll back on breach; manual: report and exit non-zero

    def next_weight(self, weight: int) -> int | None:
        later = [s for s in self.steps if s > weight]
        return later[0] if later else None


_POLICY_KINDS = {"interval": "number", "min_samples": "int", "failed_checks": "int", "steps": "ints",
                 "max_error_rate": "number", "alpha": "fraction", "beta": "fraction", "error_ratio": "ratio",
                 "error_floor": "number", "max_p95_latency": "number", "max_psi": "number", "max_ks": "number",
                 "promote": ("auto", "manual"), "rollback": ("auto", "manual")}


def parse_policy(raw) -> GuardPolicy:
    """The typed policy from dvc.yaml's mapping; UsageError (exit 2) naming the key otherwise."""
    if not isinstance(raw, dict):
        raise _bad("guard", "a mapping of guard settings", raw)
    kw: dict = {}
    for key, value in raw.items():
        kind = _POLICY_KINDS.get(key)
        if kind is None:
            raise UsageError(f"unknown setting meta.tether.guard.{key} in dvc.yaml",
                             hint="known guard settings: " + ", ".join(sorted(_POLICY_KINDS)))
        if isinstance(kind, tuple):
            if value not in kind:
                raise _bad(f"guard.{key}", " or ".join(kind), value)
        elif kind == "ints":
            if not isinstance(value, list) or not value or not all(_is_int(v) and 0 < v <= 100 for v in value) \
                    or value != sorted(set(value)) or value[-1] != 100:
                raise _bad(f"guard.{key}", "rising percentages ending at 100, e.g. [10, 25, 50, 100]", value)
            value = tuple(value)
        elif kind == "int":
            if not _is_int(value) or value < 0:
                raise _bad(f"guard.{key}", "a whole number, 0 or more", value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
            raise _bad(f"guard.{key}", "a number, 0 or more", value)
        elif kind == "fraction" and not 0 < value < 0.5:
            raise _bad(f"guard.{key}", "an error rate between 0 and 0.5, e.g. 0.01", value)
        elif kind == "ratio" and not value > 1:
            raise _bad(f"guard.{key}", "a ratio above 1, e.g. 2 (twice the stable arm's error rate)", value)
        else:
            value = float(value)
        kw[key] = value
    pol = GuardPolicy(**kw)
    if pol.min_samples < 1:
        raise _bad("guard.min_samples", "at least 1 (the guard never decides on no data)", pol.min_samples)
    return pol


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bad(key: str, want: str, value) -> UsageError:
    return UsageError(f"meta.tether.{key} in dvc.yaml must be {want}, not {repr(value)[:60]}",
                      hint=f"fix artifacts.<model>.meta.tether.{key} in dvc.yaml")
