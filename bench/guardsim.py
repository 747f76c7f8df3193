"""The guard's operating characteristics, simulated: how many requests until an error-rate
regression is caught, and how often an identical release is rolled back. Pure Python, fixed
seeds, seconds.

Each run feeds tether.core.guard.decide (the guard's own decision core, nothing re-implemented)
one sample per interval of a step at a fixed canary weight, with the default policy, until it
rolls back or passes the step (advance). A sample is `per_sample` canary requests' worth of
traffic (200; 2,000 where errors are rarer than 0.1 %, which take longer to tell apart): the split of the interval's requests between the arms and each arm's errors are drawn
(binomial split, Poisson errors), so the counts are what /metrics would report. Scenarios: a
canary at 1 % and 5 % of the traffic, the stable arm's error rate 0.1 %, the canary's 2× and 5×
that (caught how fast, missed how often), and an identical release (rolled back how often)
at 0.1 %, 0.01 % and 0 % errors: the mostly-zero and all-zero data a per-interval error-rate
comparison misjudges. And the latency rank test alone (errors left out): an identical release's
latencies and a canary 1.2× slower, drawn from a log-normal into the server's latency buckets.

    .venv/bin/python bench/guardsim.py          # the table, each figure against its target
"""

from __future__ import annotations

import math
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from tether.core import guard
from tether.core.guard import Arm, GuardPolicy, Sample, State
from tether.core.seqtest import normal_cdf
from tether.serve.metrics import LATENCY_BUCKETS

BASE_RATE = 0.001  # the stable arm's error rate
MAX_SAMPLES = 4000  # a run still undecided after this many samples counts as undecided
TARGET_FALSE = 0.01  # false-rollback rate of an identical release
SEED = 34


@dataclass(frozen=True)
class Scenario:
    weight: int  # percent of the traffic to the canary
    ratio: float  # canary error rate / stable error rate
    base_rate: float = BASE_RATE
    runs: int = 400
    per_sample: int = 200  # canary requests per sample (the interval's traffic times the weight)

    @property
    def name(self) -> str:
        what = "identical release" if self.ratio == 1 else f"{self.ratio:g}× regression"
        return f"{what} at {self.weight}%, stable {self.base_rate:.2%} errors"

    @property
    def short(self) -> str:
        return f"{'identical' if self.ratio == 1 else f'{self.ratio:g}×'} at {self.weight}%, {self.base_rate:.2%} errors"


@dataclass(frozen=True)
class Run:
    action: str  # rollback | advance | undecided
    canary: int  # canary requests until the decision
    total: int  # all requests until the decision


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: Knuth's product for small means, the normal approximation above 50."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A binomial draw: exact for small n, Poisson for rare outcomes, normal otherwise."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n < 50:
        return sum(rng.random() < p for _ in range(n))
    if n * p < 25:
        return min(n, poisson(rng, n * p))
    if n * (1 - p) < 25:
        return n - min(n, poisson(rng, n * (1 - p)))
    return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


def multinomial(rng: random.Random, n: int, probs: list[float]) -> list[int]:
    out, left, mass = [], n, 1.0
    for p in probs[:-1]:
        k = binomial(rng, left, min(1.0, p / mass)) if mass > 0 else 0
        out.append(k)
        left, mass = left - k, mass - p
    return out + [left]


def run_once(pol: GuardPolicy, sc: Scenario, rng: random.Random) -> Run:
    w = sc.weight / 100
    total_per = sc.per_sample / w
    nc = nb = ec = eb = 0
    state = State(sc.weight, Arm("canary"), Arm("stable"))
    for _ in range(MAX_SAMPLES):
        n = round(total_per)
        c = min(n, max(0, round(rng.gauss(n * w, math.sqrt(n * w * (1 - w))))))  # the split, binomial
        nc, nb = nc + c, nb + n - c
        ec += min(c, poisson(rng, c * sc.base_rate * sc.ratio))
        eb += min(n - c, poisson(rng, (n - c) * sc.base_rate))
        d = guard.decide(pol, state, Sample(Arm("canary", nc, ec), Arm("stable", nb, eb)))
        if d.action in (guard.ROLLBACK, guard.ADVANCE):
            return Run(d.action, nc, nc + nb)
        state = d.state
    return Run("undecided", nc, nc + nb)


def simulate(sc: Scenario, seed: int = SEED, pol: GuardPolicy | None = None) -> list[Run]:
    """`sc.runs` runs, each with its own generator (seeded by the seed, the scenario and the run's
    number), so a run sees the same traffic whatever the policy decides."""
    pol = pol or GuardPolicy(steps=(sc.weight, 100))
    return [run_once(pol, sc, random.Random(f"{seed}-{sc.weight}-{sc.ratio}-{sc.base_rate}-{sc.per_sample}-{i}"))
            for i in range(sc.runs)]


def quantile(values: list[int], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)])


@dataclass(frozen=True)
class Summary:
    scenario: Scenario
    rolled_back: float  # share of runs rolled back
    passed: float  # share of runs that passed the step
    canary_median: float  # canary requests until the decision that matters (rollback; pass if identical)
    canary_p95: float
    total_median: float
    total_p95: float


def summarise(sc: Scenario, runs: list[Run]) -> Summary:
    want = guard.ADVANCE if sc.ratio == 1 else guard.ROLLBACK
    hits = [r for r in runs if r.action == want]
    return Summary(sc, sum(r.action == guard.ROLLBACK for r in runs) / len(runs),
                   sum(r.action == guard.ADVANCE for r in runs) / len(runs),
                   statistics.median([r.canary for r in hits]) if hits else math.nan,
                   quantile([r.canary for r in hits], 0.95),
                   statistics.median([r.total for r in hits]) if hits else math.nan,
                   quantile([r.total for r in hits], 0.95))


# rarer errors take longer to tell apart: their samples are larger (the table says how large)
@dataclass(frozen=True)
class Latency:
    weight: int
    slowdown: float  # the canary's latencies are the stable arm's times this (1: identical)
    runs: int = 150
    samples: int = 50  # the horizon: 50 samples of 200 canary requests
    per_sample: int = 200
    median: float = 0.02  # seconds, log-normal
    sigma: float = 0.6

    @property
    def short(self) -> str:
        return f"{'identical' if self.slowdown == 1 else f'{self.slowdown:g}× slower'} at {self.weight}%, latency"

    def probs(self, factor: float) -> list[float]:
        cdf = [normal_cdf(math.log(b / (self.median * factor)) / self.sigma) for b in LATENCY_BUCKETS] + [1.0]
        return [c - (cdf[i - 1] if i else 0.0) for i, c in enumerate(cdf)]


def run_latency(pol: GuardPolicy, sc: Latency, rng: random.Random) -> Run:
    """The rank test alone: no errors and no floor (the error test holds), a budget of 0 (any
    slowdown shown is a breach); a run ends at a rollback or after `samples` samples."""
    w = sc.weight / 100
    n = round(sc.per_sample / w)
    fast, slow = sc.probs(1.0), sc.probs(sc.slowdown)
    hc, hb = [0] * len(fast), [0] * len(fast)
    state = State(sc.weight, Arm("canary"), Arm("stable"))
    for _ in range(sc.samples):
        c = binomial(rng, n, w)
        hc = [a + b for a, b in zip(hc, multinomial(rng, c, slow))]
        hb = [a + b for a, b in zip(hb, multinomial(rng, n - c, fast))]
        arms = [Arm(name, sum(h), 0, tuple(zip((*LATENCY_BUCKETS, math.inf), _cumulative(h))))
                for name, h in (("canary", hc), ("stable", hb))]
        d = guard.decide(pol, state, Sample(arms[0], arms[1]))
        if d.action == guard.ROLLBACK:
            return Run(d.action, arms[0].requests, arms[0].requests + arms[1].requests)
        state = d.state
    return Run("undecided", sum(hc), sum(hc) + sum(hb))


def _cumulative(h: list[int]) -> list[int]:
    out, total = [], 0
    for k in h:
        total += k
        out.append(total)
    return out


def simulate_latency(sc: Latency, seed: int = SEED) -> list[Run]:
    pol = GuardPolicy(steps=(sc.weight, 100), error_floor=0.0, max_p95_latency=0.0)
    return [run_latency(pol, sc, random.Random(f"{seed}-latency-{sc.weight}-{sc.slowdown}-{i}")) for i in range(sc.runs)]


LATENCY = [Latency(1, 1.0), Latency(5, 1.0), Latency(5, 1.2, runs=100)]

SCENARIOS = [Scenario(w, r) for w in (1, 5) for r in (2.0, 5.0)] + [
    Scenario(w, 1.0, rate, per_sample=200 if rate >= BASE_RATE else 2000) for w in (1, 5)
    for rate in (BASE_RATE, 0.0001)] + [Scenario(w, 1.0, 0.0, runs=10, per_sample=2000) for w in (1, 5)]


def main() -> int:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    from common import Table

    pol = GuardPolicy()
    print(f"guard simulator: default policy (alpha {pol.alpha:g}, beta {pol.beta:g}, error_ratio "
          f"{pol.error_ratio:g}, error_floor {pol.error_floor:g}), one step at a fixed weight, seed {SEED}")
    print(f"  {'scenario':48} {'runs':>5} {'sample':>6} {'rolled back':>12} {'passed':>7} {'canary requests':>22} "
          f"{'all requests':>24}")
    print(f"  {'':48} {'':>5} {'':>6} {'':>12} {'':>7} {'median':>10} {'p95':>11} {'median':>11} {'p95':>12}")
    table = Table("Guard simulator: detection delay and false rollbacks")
    for sc in SCENARIOS:
        try:
            s = summarise(sc, simulate(sc))
        except Exception as exc:  # a bench reports, never crashes
            print(f"  MISSED {sc.name}: the simulation failed: {exc!r}")
            continue
        print(f"  {sc.name:48} {sc.runs:>5} {sc.per_sample:>6} {s.rolled_back:>12.2%} {s.passed:>7.2%} {s.canary_median:>10,.0f} "
              f"{s.canary_p95:>11,.0f} {s.total_median:>11,.0f} {s.total_p95:>12,.0f}", flush=True)
        if sc.ratio == 1:
            table.add(f"false rollbacks, {sc.short}", s.rolled_back * 100, "%",
                      target=f"≤ {TARGET_FALSE:.0%}", ok=s.rolled_back <= TARGET_FALSE)
        else:
            # at the design ratio, 1 - beta is Wald's approximation and 400 runs have a standard error
            # of about 1 %: the target allows for both; beyond it the test catches nearly all
            want = 1 - 2 * pol.beta if sc.ratio <= pol.error_ratio else 1 - pol.beta
            table.add(f"caught, {sc.short}", s.rolled_back * 100, "%", target=f"≥ {want:.0%}",
                      ok=s.rolled_back >= want)
            table.add(f"  canary requests to catch it, median", s.canary_median, "")
            table.add(f"  canary requests to catch it, p95", s.canary_p95, "")
    print(f"  {'latency rank test alone':48} {'runs':>5} {'sample':>6} {'rolled back':>12} {'horizon':>7}")
    for lat in LATENCY:
        try:
            runs = simulate_latency(lat)
        except Exception as exc:  # a bench reports, never crashes
            print(f"  MISSED {lat.short}: the simulation failed: {exc!r}")
            continue
        back = [r.canary for r in runs if r.action == guard.ROLLBACK]
        share = len(back) / len(runs)
        caught = f"median {statistics.median(back):,.0f}, p95 {quantile(back, 0.95):,.0f} canary requests" if back else ""
        print(f"  {lat.short:48} {lat.runs:>5} {lat.per_sample:>6} {share:>12.1%} {lat.samples * lat.per_sample:>7,}"
              f"  {caught if lat.slowdown != 1 else ''}", flush=True)
        if lat.slowdown == 1:
            table.add(f"false rollbacks, {lat.short}", share * 100, "%", target=f"≤ {TARGET_FALSE:.0%}",
                      ok=share <= TARGET_FALSE)
        else:
            table.add(f"caught, {lat.short}", share * 100, "%", target="≥ 95%", ok=share >= 0.95)
            table.add("  canary requests to catch it, median", statistics.median(back) if back else math.nan, "")
    table.print()
    return 0


if __name__ == "__main__":
    main()
