"""The canary guard's decision core: pure, no I/O, table-testable.

A step machine in the manner of Flagger: it is fed one sample of the server's metrics per
interval and answers hold, advance, rollback, promote or wait (for a human approver), always
with the evidence that decided it (which check, the measured value, the threshold, the sample
counts). It never acts on too little data: until the canary arm has `min_samples` requests
since the step began, the answer is hold.

Checks (the statistics and their design error rates are tether.core.seqtest's): error_rate,
the canary's error rate against the ceiling `max_error_rate`; error_ratio, Wald's SPRT on its
error-rate ratio to the stable arm (hold between the bounds, pass a step at the lower one, roll
back at the upper one over the rollout; a canary shown under `error_floor` passes too); latency,
a rank test against the stable arm that rolls back a canary shown slower with its p95 over
`max_p95_latency` (p95_latency, the p95 alone, with no stable traffic to compare); and the score
distribution (PSI and KS over the score histogram's buckets) against the stable arm's live scores
and the release's own eval scores (reproduced by the worker's smoke test before it took
traffic): distance thresholds, breached only by samples unlikely from one distribution
(seqtest.same_distribution): sampling noise at small counts is not a breach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from tether.core import seqtest
from tether.core.guardpolicy import GuardPolicy as GuardPolicy, parse_policy as parse_policy  # the policy (settings load it)

SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 … 1.0, then +Inf
HOLD, ADVANCE, ROLLBACK, PROMOTE, WAIT = "hold", "advance", "rollback", "promote", "wait"
MIN_EVAL = 10  # eval scores below which the eval reference is too small to compare with


@dataclass(frozen=True)
class Arm:
    """Cumulative counters of one arm for one release, as /metrics reports them."""

    release: str = ""
    requests: int = 0
    errors: int = 0
    latency: tuple[tuple[float, int], ...] = ()  # (upper bound, cumulative count), +Inf last
    scores: tuple[int, ...] = ()  # per-bucket counts (not cumulative), len(SCORE_BUCKETS) + 1

    def minus(self, base: "Arm") -> "Arm":
        """The counts since `base` (the same release's earlier sample); all of them when the
        counters went backwards (the server restarted) or `base` is another release's."""
        if base.release != self.release or base.requests > self.requests:
            return self
        lat = tuple((b, c - dict(base.latency).get(b, 0)) for b, c in self.latency)
        sc = tuple(a - b for a, b in zip(self.scores, base.scores)) if base.scores else self.scores
        return Arm(self.release, self.requests - base.requests, self.errors - base.errors, lat, sc)

    @property
    def n_scores(self) -> int:
        return sum(self.scores)


@dataclass(frozen=True)
class Sample:
    canary: Arm
    stable: Arm | None = None  # None: guarding one environment alone
    eval_scores: tuple[int, ...] = ()  # the canary release's eval scores, bucketed


@dataclass(frozen=True)
class State:
    weight: int  # the recorded weight now
    baseline: Arm = field(default_factory=Arm)  # canary counters when this step began
    stable_baseline: Arm = field(default_factory=Arm)
    failures: int = 0  # failed samples in a row at this step
    llr: float = 0.0  # the error-ratio test's log-likelihood ratio over the rollout's finished steps


CONTINUE = "continue"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped (nothing to compare against), or undecided when `pending`
    value: float | None  # a sequential test's log-likelihood ratio, or the measured value
    threshold: float  # the bound it breaches at (a maximum, or the log-LR that rejects)
    detail: str
    lower: float | None = None  # a sequential test's log-LR that passes (None: no such bound)
    pending: bool = False  # a sequential test between its bounds: hold for more data
    test: bool = False  # a sequential test: `value` is its log-LR, `detail` says the rest

    def line(self) -> str:
        verdict = CONTINUE if self.pending else "skipped" if self.ok is None else ("ok" if self.ok else "BREACH")
        if self.test:
            return f"{self.name}: {self.detail} {verdict}"
        shown = "n/a" if self.value is None else f"{self.value:.4g}"
        return f"{self.name}={shown} (max {self.threshold:g}, {self.detail}) {verdict}"


@dataclass(frozen=True)
class Decision:
    action: str  # hold | advance | rollback | promote | wait
    weight: int  # the weight after this decision
    checks: tuple[Check, ...]
    why: str
    state: State

    @property
    def evidence(self) -> str:
        return "; ".join([self.why, *(c.line() for c in self.checks)])

    @property
    def breached(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]


def p95(latency: tuple[tuple[float, int], ...]) -> float | None:
    """The upper bound of the bucket that holds the 95th percentile (an over-estimate, as
    Prometheus' histogram_quantile is at a bucket edge); None with no requests."""
    if not latency or latency[-1][1] <= 0:
        return None
    want = 0.95 * latency[-1][1]
    for bound, count in latency:
        if count >= want:
            return bound
    return latency[-1][0]


def psi(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Population stability index of two bucketed distributions (counts), smoothed so an empty
    bucket on one side is a large term, never a division by zero."""
    na, nb, eps = sum(a), sum(b), 1e-4
    total = 0.0
    for x, y in zip(a, b):
        p, q = max(x / na, eps), max(y / nb, eps)
        total += (p - q) * math.log(p / q)
    return total


def ks(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Kolmogorov-Smirnov distance at the bucket edges (a lower bound of the exact statistic)."""
    na, nb = sum(a), sum(b)
    ca = cb = 0
    worst = 0.0
    for x, y in zip(a, b):
        ca, cb = ca + x, cb + y
        worst = max(worst, abs(ca / na - cb / nb))
    return worst


def error_rate_check(pol: GuardPolicy, canary: Arm) -> Check:
    """The ceiling: H1 the canary's error rate is max_error_rate, H0 1/error_ratio of it; rolls
    back at log(1/α). A ceiling of 0 is no rate to test against: any error breaches."""
    n, e, m = canary.requests, canary.errors, pol.max_error_rate
    if m <= 0:
        return Check("error_rate", e == 0, e / n, 0.0, f"{e} of {n} requests")
    b = seqtest.bounds(pol.alpha, pol.beta)
    llr = seqtest.rate_llr(n, e, m / pol.error_ratio, pol.error_ratio)
    return Check("error_rate", llr < b.upper, llr, b.upper, test=True, detail=(
        f"{e} errors of {n} canary requests ({e / n:.3%}); log-LR {llr:+.2f} for a rate at the ceiling {m:g} against "
        f"one at {m / pol.error_ratio:g}, rolls back at ≥ {b.upper:.2f} (false rollback ≤ {pol.alpha:g} a step at "
        f"{m / pol.error_ratio:g} or under)"))


def error_ratio_check(pol: GuardPolicy, canary: Arm, stable: Arm | None, llr_done: float,
                      compare: bool = True) -> Check | None:
    """Wald's SPRT on the canary's error-rate ratio to the stable arm (tether.core.seqtest);
    None guarding one environment alone; skipped at weight 100 (`compare` false)."""
    if stable is None:
        return None
    b = seqtest.bounds(pol.alpha / 2, pol.beta)
    step = seqtest.ratio_llr(canary.requests, canary.errors, stable.requests, stable.errors,
                             pol.error_ratio) if compare else None
    design = (f"designed for {pol.error_ratio:g}× the stable arm's error rate: false rollback ≤ {pol.alpha / 2:g}, "
              f"passing a {pol.error_ratio:g}× canary ≈ {pol.beta:g}")
    if step is None:
        return Check("error_ratio", None, llr_done, b.upper, f"the stable arm takes no traffic at this step, nothing "
                     f"to compare; log-LR {llr_done:+.2f} over the rollout; {design}", lower=b.lower, test=True)
    total = llr_done + step
    detail = (f"canary {canary.errors} errors of {canary.requests} requests, stable {stable.errors} of "
              f"{stable.requests}; log-LR {step:+.2f} this step (passes at ≤ {b.lower:.2f}), {total:+.2f} over the "
              f"rollout (rolls back at ≥ {b.upper:.2f}); {design}")
    if total >= b.upper:
        return Check("error_ratio", False, total, b.upper, detail, lower=b.lower, test=True)
    if step <= b.lower:
        return Check("error_ratio", True, total, b.upper, detail, lower=b.lower, test=True)
    floor = seqtest.rate_llr(canary.requests, canary.errors, pol.error_floor, pol.error_ratio)
    if pol.error_floor > 0 and floor <= b.lower:
        return Check("error_ratio", True, total, b.upper, detail + f"; too few errors to compare, and the canary's "
                     f"rate is shown under error_floor {pol.error_floor:g} (log-LR {floor:+.2f})", lower=b.lower,
                     test=True)
    return Check("error_ratio", None, total, b.upper, detail, lower=b.lower, pending=True, test=True)


def latency_check(pol: GuardPolicy, canary: Arm, stable: Arm | None) -> Check:
    """Mann-Whitney against the stable arm (always-valid, α/2 over the steps that compare); the
    p95 against max_p95_latency when there is no stable traffic to compare with."""
    lat = p95(canary.latency)
    same = stable is not None and [b for b, _c in stable.latency] == [b for b, _c in canary.latency]
    rank = seqtest.rank_test(seqtest.per_bucket([c for _b, c in canary.latency]),
                             seqtest.per_bucket([c for _b, c in stable.latency])) if stable and same else None
    if rank is None:
        return Check("p95_latency", None if lat is None else lat <= pol.max_p95_latency, lat, pol.max_p95_latency,
                     f"{canary.requests} requests")
    compared = max(1, len([s for s in pol.steps if s < 100]))
    upper = math.log(2 * compared / pol.alpha)
    slower, over = rank.log_lr >= upper, lat is not None and lat > pol.max_p95_latency
    verdict = ("shown slower, p95 over budget" if slower and over else "shown slower, p95 within budget" if slower
               else "not shown slower")
    return Check("latency", not (slower and over), rank.log_lr, upper, test=True, detail=(
        f"canary {rank.n_canary} requests vs stable {rank.n_stable}: slower in {rank.auc:.1%} of pairs "
        f"(z {rank.z:+.2f}); rank-test log-LR {rank.log_lr:+.2f} (shown slower at ≥ {upper:.2f}, false rollback "
        f"≤ {pol.alpha / (2 * compared):.2g} a step); p95 {lat:g} s, budget {pol.max_p95_latency:g} s: {verdict}"))


def checks(pol: GuardPolicy, canary: Arm, stable: Arm | None, eval_scores: tuple[int, ...],
           llr_done: float = 0.0, weight: int = 0) -> list[Check]:
    """Every check of one sample; at weight 100 the stable arm takes no traffic by design, so
    the error ratio and the latency are not compared with the few requests it still answered."""
    out = [error_rate_check(pol, canary)]
    ratio = error_ratio_check(pol, canary, stable, llr_done, compare=weight < 100)
    if ratio is not None:
        out.append(ratio)
    out.append(latency_check(pol, canary, stable if weight < 100 else None))
    refs = [("stable", stable.scores if stable else (), stable.n_scores if stable else 0),
            ("eval", eval_scores, sum(eval_scores))]
    for ref, dist, m in refs:
        if stable is None and ref == "stable":
            continue
        for name, fn, limit in (("psi", psi, pol.max_psi), ("ks", ks, pol.max_ks)):
            detail = f"canary {canary.n_scores} scores vs {ref} {m}"
            # the eval set is what it is (all of it recorded); below MIN_EVAL it says too little
            need = min(pol.min_samples, MIN_EVAL) if ref == "eval" else pol.min_samples
            if canary.n_scores < pol.min_samples or m < need or len(dist) != len(canary.scores):
                out.append(Check(f"{name}_vs_{ref}", None, None, limit, detail + ", too few to compare"))
                continue
            value = fn(canary.scores, dist)
            # a distance over the limit that chance alone explains at these sample sizes is no
            # evidence: a breach is over the limit AND unlikely from one distribution (α over the steps)
            same, why = seqtest.same_distribution(name, canary.scores, dist, pol.alpha / max(1, len(pol.steps)))
            out.append(Check(f"{name}_vs_{ref}", value <= limit or same, value, limit,
                             detail + (f"; over the limit, but {why}" if value > limit and same else
                                       f"; {why}" if value > limit else "")))
    return out


def decide(pol: GuardPolicy, state: State, sample: Sample) -> Decision:
    """One step. `state.weight` is the weight recorded in git now; a canary at weight 0 (rolled
    back, or never started) is not watched."""
    if state.weight <= 0:
        return Decision(HOLD, 0, (), "the canary takes no traffic (weight 0): nothing to watch", state)
    canary = sample.canary.minus(state.baseline)
    stable = sample.stable.minus(state.stable_baseline) if sample.stable is not None else None
    if canary.requests < pol.min_samples:
        return Decision(HOLD, state.weight, (), f"too little data: {canary.requests} of {pol.min_samples} canary "
                        f"requests at weight {state.weight}", state)
    found = tuple(checks(pol, canary, stable, sample.eval_scores, state.llr, state.weight))
    bad = [c for c in found if c.ok is False]
    at = f"at weight {state.weight}, {canary.requests} canary requests"
    if bad:
        failures = state.failures + 1
        names = ", ".join(c.name for c in bad)
        if failures > pol.failed_checks:
            if pol.rollback == "manual":
                return Decision(WAIT, state.weight, found, f"breach of {names} {at} ({failures} failed "
                                "sample(s)): rollback needs a human (policy rollback: manual)", state)
            return Decision(ROLLBACK, 0, found, f"breach of {names} {at} ({failures} failed sample(s), "
                            f"{pol.failed_checks} tolerated)", replace(state, weight=0, failures=failures))
        return Decision(HOLD, state.weight, found, f"breach of {names} {at}: {failures} failed sample(s), "
                        f"{pol.failed_checks} tolerated", replace(state, failures=failures))
    waiting = [c.name for c in found if c.pending]
    if waiting:
        return Decision(HOLD, state.weight, found, f"continue {at}: {', '.join(waiting)} between its bounds, "
                        "more data needed", replace(state, failures=0))
    nxt = pol.next_weight(state.weight)
    if nxt is not None:
        llr = next((c.value for c in found if c.name == "error_ratio" and c.value is not None), state.llr)
        return Decision(ADVANCE, nxt, found, f"checks passed {at}: weight {state.weight} → {nxt}",
                        State(nxt, sample.canary, sample.stable or Arm(), 0, llr))
    if pol.promote == "manual":
        return Decision(WAIT, state.weight, found, f"checks passed {at}, the last step: waiting for a human "
                        "approver (policy promote: manual)", state)
    return Decision(PROMOTE, state.weight, found, f"checks passed {at}, the last step: promote", state)


def failed_sample(pol: GuardPolicy, state: State, why: str) -> Decision:
    """A sample the server could not give truthfully (a counter that is +Inf, NaN, negative or
    fractional, a histogram that falls, more errors than requests): a failed observation,
    counted in a row like a breach, so a server that lies about its health is rolled back from
    (or a human is paged), never trusted and never the guard's crash."""
    check = Check("metrics", False, None, 0.0, why)
    if state.weight <= 0:
        return Decision(HOLD, 0, (check,), "the canary takes no traffic (weight 0): nothing to watch", state)
    failures = state.failures + 1
    if failures > pol.failed_checks:
        if pol.rollback == "manual":
            return Decision(WAIT, state.weight, (check,), f"unusable metrics ({failures} failed sample(s)): "
                            "rollback needs a human (policy rollback: manual)", state)
        return Decision(ROLLBACK, 0, (check,), f"unusable metrics ({failures} failed sample(s), {pol.failed_checks} "
                        "tolerated)", replace(state, weight=0, failures=failures))
    return Decision(HOLD, state.weight, (check,), f"unusable metrics: {failures} failed sample(s), "
                    f"{pol.failed_checks} tolerated", replace(state, failures=failures))


def watch_alone(pol: GuardPolicy, state: State, sample: Sample) -> Decision:
    """One environment with no canary: its live scores against its release's eval scores, and
    its error rate. Never advances; a breach rolls back to the last known good release."""
    d = decide(pol, replace(state, weight=100), Sample(sample.canary, None, sample.eval_scores))
    if d.action != HOLD and not d.breached:
        n = sample.canary.minus(state.baseline).requests
        return Decision(HOLD, 100, d.checks, f"checks passed over {n} requests: healthy", replace(state, failures=0))
    return d


def policy_line(pol: GuardPolicy) -> str:
    """The policy as one trailer value (what allowed a promotion or a rollback)."""
    return (f"steps={','.join(map(str, pol.steps))} min_samples={pol.min_samples} failed_checks={pol.failed_checks} "
            f"max_error_rate={pol.max_error_rate:g} alpha={pol.alpha:g} beta={pol.beta:g} "
            f"error_ratio={pol.error_ratio:g} error_floor={pol.error_floor:g} max_p95_latency={pol.max_p95_latency:g} max_psi={pol.max_psi:g} "
            f"max_ks={pol.max_ks:g} promote={pol.promote} rollback={pol.rollback}")


def bucket_counts(values) -> list[int]:
    """Per-bucket counts of `values` over SCORE_BUCKETS, the last one for anything above."""
    out = [0] * (len(SCORE_BUCKETS) + 1)
    for v in values:
        out[next((i for i, b in enumerate(SCORE_BUCKETS) if v <= b), len(SCORE_BUCKETS))] += 1
    return out
