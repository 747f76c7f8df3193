"""`tether serve`'s /metrics: per-release (and, with a canary, per-arm) counters and
histograms in Prometheus' text format, which `tether guard` reads back (tether.guardrun)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tether.core.guard import SCORE_BUCKETS

if TYPE_CHECKING:
    from tether.serve.app import Live

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Per-release counters and histograms, rendered in Prometheus' text format. With a canary
    target every series also carries `arm` (stable | canary), so each arm reads separately even
    when both serve the same release."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = {}
        self.errors: dict[tuple, int] = {}
        self.latency: dict[tuple, list] = {}
        self.scores: dict[tuple, list] = {}

    @staticmethod
    def _hist(store: dict, release: tuple, buckets: tuple, value: float) -> None:
        h = store.setdefault(release, [[0] * len(buckets), 0, 0.0])
        for i, b in enumerate(buckets):
            if value <= b:
                h[0][i] += 1
        h[1] += 1
        h[2] += value

    def observe(self, release: str, status: int, seconds: float, scores: Sequence[float] = (),
                arm: str | None = None) -> None:
        key = (release, arm)
        with self._lock:
            self.requests[(key, status)] = self.requests.get((key, status), 0) + 1
            if status >= 400:
                self.errors[key] = self.errors.get(key, 0) + 1
            self._hist(self.latency, key, LATENCY_BUCKETS, seconds)
            for s in scores:
                self._hist(self.scores, key, SCORE_BUCKETS, s)

    def render(self, live: list[tuple[Live, str | None, int | None]]) -> str:
        """`live`: (a serving worker, its arm or None, the canary's weight or None) per arm."""
        out = ["# HELP tether_release_info The release serving now (value 1).", "# TYPE tether_release_info gauge"]
        for lv, arm, _w in live:
            out.append(f'tether_release_info{{{_labels((lv.worker.name, arm))}}} 1')
        weights = [(lv, arm, w) for lv, arm, w in live if w is not None]
        if weights:
            out += ["# HELP tether_canary_weight Percent of /predict traffic routed to the canary arm.",
                    "# TYPE tether_canary_weight gauge"]
            out += [f'tether_canary_weight{{{_labels((lv.worker.name, arm))}}} {w}' for lv, arm, w in weights]
        out += ["# HELP tether_eval_score The release's eval scores, reproduced by its smoke test before it "
                "took traffic.", "# TYPE tether_eval_score histogram"]
        for lv, arm, _w in live:
            counts = lv.hello.get("eval_scores")
            if isinstance(counts, list) and len(counts) == len(SCORE_BUCKETS) + 1:
                out += _histogram("tether_eval_score", (lv.worker.name, arm), SCORE_BUCKETS, counts)
        out += ["# HELP tether_requests_total /predict requests by release and HTTP status.",
                "# TYPE tether_requests_total counter"]
        with self._lock:
            for (key, code), n in sorted(self.requests.items(), key=_order):
                out.append(f'tether_requests_total{{{_labels(key)},code="{code}"}} {n}')
            out += ["# HELP tether_request_errors_total /predict requests answered with a 4xx or 5xx.",
                    "# TYPE tether_request_errors_total counter"]
            for key, n in sorted(self.errors.items(), key=_order):
                out.append(f'tether_request_errors_total{{{_labels(key)}}} {n}')
            for name, store, buckets, help_ in (
                    ("tether_request_duration_seconds", self.latency, LATENCY_BUCKETS, "/predict latency in the server."),
                    ("tether_score", self.scores, SCORE_BUCKETS, "Scores the model returned.")):
                out += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
                for key, (counts, n, total) in sorted(store.items(), key=_order):
                    lab = _labels(key)
                    out += [f'{name}_bucket{{{lab},le="{b}"}} {c}' for b, c in zip(buckets, counts)]
                    out += [f'{name}_bucket{{{lab},le="+Inf"}} {n}', f'{name}_sum{{{lab}}} {total:.6f}',
                            f'{name}_count{{{lab}}} {n}']
        return "\n".join(out) + "\n"


def _order(item) -> tuple:
    return tuple("" if x is None else str(x) for x in (item[0] if isinstance(item[0], tuple) else (item[0],)))


def _labels(key: tuple) -> str:
    release, arm = key
    return f'release="{release}"' + (f',arm="{arm}"' if arm else "")


def _histogram(name: str, key: tuple, buckets: tuple, counts: list) -> list[str]:
    """Per-bucket counts (the last above every bound) as Prometheus' cumulative buckets."""
    lab, run, out = _labels(key), 0, []
    for b, c in zip(buckets, counts):
        run += c
        out.append(f'{name}_bucket{{{lab},le="{b}"}} {run}')
    out += [f'{name}_bucket{{{lab},le="+Inf"}} {sum(counts)}', f'{name}_count{{{lab}}} {sum(counts)}']
    return out
