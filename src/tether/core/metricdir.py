"""Which way each metric is good: `higher`, `lower`, or `info` (a count, bookkeeping, a
setting: recorded and shown, never gated). Declared in `meta.tether.metrics` (`{name or
pattern: higher|lower|info}`), in `lower_is_better` and `gate_metrics` (kept as they were),
else read from the metric's name. Pure: the regression gate (core/gates.py) asks `direction`
for every metric the two releases share, and says which way it used and what it left out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from tether.errors import UsageError

HIGHER, LOWER, INFO = "higher", "lower", "info"
DIRECTIONS = (HIGHER, LOWER, INFO)

# why a metric is informational: (one, several), as the gate's output says it
REASONS = {
    "count": ("a count", "counts"),
    "bookkeeping": ("bookkeeping", "bookkeeping"),
    "setting": ("a setting, not a measure", "settings, not measures"),
    "declared": ("declared info", "declared info"),
    "unlisted": ("not in gate_metrics", "not in gate_metrics"),
}

# -- the defaults, read from a metric's name (lower case, split into words at `_ . - /` …) ---------
SETTINGS = frozenset({"threshold", "cutoff"})
BOOKKEEPING = frozenset({"step", "epoch", "epochs", "timestamp", "seed", "iteration", "iterations", "time",
                         "duration", "elapsed", "seconds", "walltime", "runtime"})
COUNT_NAMES = frozenset({"count", "counts", "rows", "n", "nrows", "nsamples", "support", "samples", "positives",
                         "negatives", "tp", "fp", "tn", "fn", "examples", "instances", "records"})
COUNT_FIRST = frozenset({"n", "num", "count", "nrows", "nsamples"})  # n_eval, num_rows, count_fraud
COUNT_LAST = frozenset({"count", "counts", "rows", "samples", "support", "positives", "negatives", "examples",
                        "instances", "records"})  # error_count, eval_rows, false_positives
LOWER_PARTS = ("loss", "error", "latency", "brier", "perplexity", "false_positive_rate", "false_negative_rate",
               "false_discovery_rate")  # anywhere in the name: val_loss, logloss, mean_absolute_error
LOWER_WORDS = frozenset({"mse", "mae", "rmse", "rmsle", "msle", "mape", "smape", "nll", "wer", "cer", "fpr", "fnr",
                         "fdr", "eer", "ece", "err", "cost", "regret"})


@dataclass(frozen=True)
class Direction:
    way: str  # higher | lower | info
    why: str  # info: a key of REASONS; gated: "declared", "lower_is_better", "gate_metrics", "name", "default"

    @property
    def gated(self) -> bool:
        return self.way != INFO


def by_name(name: str) -> Direction:
    """The default for a metric nobody declared: settings, counts and bookkeeping (steps,
    epochs, run times) are informational; losses, errors, latencies and the like are
    lower-is-better; the rest higher-is-better."""
    low = name.lower()
    words = [w for w in re.split(r"[^a-z0-9]+", low) if w]
    if low in SETTINGS or (words and words[-1] in SETTINGS):
        return Direction(INFO, "setting")
    if low in COUNT_NAMES or (len(words) > 1 and (words[0] in COUNT_FIRST or words[-1] in COUNT_LAST)) \
            or words[:2] == ["number", "of"]:
        return Direction(INFO, "count")
    if any("latency" in w for w in words):  # before bookkeeping: latency_seconds is the model's
        return Direction(LOWER, "name")
    if low in BOOKKEEPING or (words and (words[0] in BOOKKEEPING or words[-1] in BOOKKEEPING)):
        return Direction(INFO, "bookkeeping")
    if any(part in low for part in LOWER_PARTS) or any(w in LOWER_WORDS for w in words):
        return Direction(LOWER, "name")
    return Direction(HIGHER, "default")


@dataclass(frozen=True)
class MetricPolicy:
    """The directions a model declares (settings: `metrics`, `lower_is_better`, `gate_metrics`).
    Precedence: `metrics` by exact name, then its patterns in the order written; then a
    non-empty `gate_metrics` leaves every metric it does not list ungated; `lower_is_better`;
    a name `gate_metrics` lists is gated (lower by name, else higher); the name's default."""

    declared: tuple[tuple[str, str], ...] = ()  # (name or pattern, direction), as written
    lower_is_better: tuple[str, ...] = ()
    gate_metrics: tuple[str, ...] = ()

    def direction(self, name: str) -> Direction:
        exact = {k: v for k, v in self.declared}
        way = exact.get(name) or next((v for k, v in self.declared if _pattern(k) and fnmatchcase(name, k)), None)
        if way is not None:
            return Direction(way, "declared")
        if self.gate_metrics and name not in self.gate_metrics:
            return Direction(INFO, "unlisted")
        if name in self.lower_is_better:
            return Direction(LOWER, "lower_is_better")
        default = by_name(name)
        if name in self.gate_metrics and not default.gated:
            return Direction(HIGHER, "gate_metrics")
        return default


def _pattern(key: str) -> bool:
    return any(c in key for c in "*?[")


def parse(value, lower_is_better: tuple[str, ...] = (), gate_metrics: tuple[str, ...] = ()) -> dict[str, str]:
    """`meta.tether.metrics` as written: {name or glob pattern: higher|lower|info}. A wrong
    direction, or one that contradicts `lower_is_better` or `gate_metrics` by name, is a usage
    error naming the key."""
    want = "a mapping of metric names (or patterns like n_*) to higher, lower or info, e.g. {f1: higher, loss: lower, positives: info}"
    if not isinstance(value, dict):
        raise _bad("metrics", want, value)
    out: dict[str, str] = {}
    for key, way in value.items():
        if not isinstance(key, str) or not key.strip():
            raise _bad("metrics", want, key)
        if way not in DIRECTIONS:
            raise _bad(f"metrics.{key}", "higher, lower or info (info: recorded, never gated)", way)
        if way != LOWER and key in lower_is_better:
            raise _bad(f"metrics.{key}", f"lower: lower_is_better lists {key}", way)
        if way == INFO and key in gate_metrics:
            raise _bad(f"metrics.{key}", f"higher or lower: gate_metrics lists {key}, so it is gated", way)
        out[key] = way
    return out


def _bad(key: str, want: str, value) -> UsageError:
    return UsageError(f"meta.tether.{key} in dvc.yaml must be {want}, not {repr(value)[:60]}",
                      hint=f"fix artifacts.<model>.meta.tether.{key} in dvc.yaml (docs/gates.md)")


def not_gated_text(skipped: dict[str, Direction]) -> str:
    """`n_eval, positives (counts); threshold (a setting, not a measure)`: grouped by why."""
    groups: dict[str, list[str]] = {}
    for name in sorted(skipped):
        groups.setdefault(skipped[name].why, []).append(name)
    parts = []
    for why in REASONS:
        names = groups.get(why)
        if names:
            one, several = REASONS[why]
            parts.append(f"{_names(names)} ({one if len(names) == 1 else several})")
    return "; ".join(parts)


def gated_text(gated: dict[str, Direction]) -> str:
    """`higher is better: f1, precision; lower is better: loss`."""
    parts = []
    for way in (HIGHER, LOWER):
        names = sorted(k for k, d in gated.items() if d.way == way)
        if names:
            parts.append(f"{way} is better: {_names(names)}")
    return "; ".join(parts)


def _names(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (f" … (+{len(names) - most})" if len(names) > most else "")
