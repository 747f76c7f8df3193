"""`tether serve`'s /metrics: per-release (and, with a canary, per-arm) counters and
histograms in Prometheus' text format, which `tether guard` reads back (tether.canary.scrape);
both spell every series through tether.core.metricnames."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from tether.core import metricnames as mn
from tether.core.guard import SCORE_BUCKETS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class ArmView:
    """One serving arm as /metrics reports it: the release its worker serves, its arm (None
    without a canary target), the canary's weight (None but on the canary arm) and the per-bucket
    counts of the eval scores its smoke test reproduced, as the worker's ready line gave them."""

    release: str
    arm: str | None
    weight: int | None
    eval_counts: list | None


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

    def answered(self, resp, release: str, started: float, scores: Sequence[float] = (), arm: str | None = None):
        """A /predict or Open Inference Protocol response on its way out: it names the release
        (and arm) that answered, and is counted. `release` is the worker's that answered, else
        the live one's ("none" with none live)."""
        import time

        resp.headers["x-tether-release"] = release
        if arm is not None:
            resp.headers["x-tether-arm"] = arm
        self.observe(release, resp.status_code, time.perf_counter() - started, scores, arm)
        return resp

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

    def render(self, arms: Sequence[ArmView]) -> str:
        """`arms`: every arm serving now (a dead worker serves nothing)."""
        out = [f"# HELP {mn.RELEASE_INFO} The release serving now (value 1).", f"# TYPE {mn.RELEASE_INFO} gauge"]
        for a in arms:
            out.append(f'{mn.RELEASE_INFO}{{{_labels((a.release, a.arm))}}} 1')
        weights = [a for a in arms if a.weight is not None]
        if weights:
            out += [f"# HELP {mn.CANARY_WEIGHT} Percent of /predict traffic routed to the canary arm.",
                    f"# TYPE {mn.CANARY_WEIGHT} gauge"]
            out += [f'{mn.CANARY_WEIGHT}{{{_labels((a.release, a.arm))}}} {a.weight}' for a in weights]
        out += [f"# HELP {mn.EVAL_SCORE} The release's eval scores, reproduced by its smoke test before it "
                "took traffic.", f"# TYPE {mn.EVAL_SCORE} histogram"]
        for a in arms:
            counts = a.eval_counts
            if isinstance(counts, list) and len(counts) == len(SCORE_BUCKETS) + 1:
                out += _histogram(mn.EVAL_SCORE, (a.release, a.arm), SCORE_BUCKETS, counts)
        out += [f"# HELP {mn.REQUESTS} /predict requests by release and HTTP status.",
                f"# TYPE {mn.REQUESTS} counter"]
        with self._lock:
            for (key, code), n in sorted(self.requests.items(), key=_order):
                out.append(f'{mn.REQUESTS}{{{_labels(key)},{mn.CODE}="{code}"}} {n}')
            out += [f"# HELP {mn.ERRORS} /predict requests answered with a 4xx or 5xx.",
                    f"# TYPE {mn.ERRORS} counter"]
            for key, n in sorted(self.errors.items(), key=_order):
                out.append(f'{mn.ERRORS}{{{_labels(key)}}} {n}')
            for name, store, buckets, help_ in (
                    (mn.DURATION, self.latency, LATENCY_BUCKETS, "/predict latency in the server."),
                    (mn.SCORE, self.scores, SCORE_BUCKETS, "Scores the model returned.")):
                out += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
                for key, (counts, n, total) in sorted(store.items(), key=_order):
                    lab = _labels(key)
                    out += [f'{mn.bucket(name)}{{{lab},{mn.LE}="{b}"}} {c}' for b, c in zip(buckets, counts)]
                    out += [f'{mn.bucket(name)}{{{lab},{mn.LE}="{mn.INF}"}} {n}',
                            f'{name}{mn.SUM}{{{lab}}} {total:.6f}', f'{name}{mn.COUNT}{{{lab}}} {n}']
        return "\n".join(out) + "\n"


def _order(item) -> tuple:
    return tuple("" if x is None else str(x) for x in (item[0] if isinstance(item[0], tuple) else (item[0],)))


def _labels(key: tuple) -> str:
    release, arm = key
    return f'{mn.RELEASE}="{release}"' + (f',{mn.ARM}="{arm}"' if arm else "")


def _histogram(name: str, key: tuple, buckets: tuple, counts: list) -> list[str]:
    """Per-bucket counts (the last above every bound) as Prometheus' cumulative buckets."""
    lab, run, out = _labels(key), 0, []
    for b, c in zip(buckets, counts):
        run += c
        out.append(f'{mn.bucket(name)}{{{lab},{mn.LE}="{b}"}} {run}')
    out += [f'{mn.bucket(name)}{{{lab},{mn.LE}="{mn.INF}"}} {sum(counts)}', f'{name}{mn.COUNT}{{{lab}}} {sum(counts)}']
    return out
