"""The guard's sequential tests: pure arithmetic (math only), each with the error rates it was
designed for, valid however often the guard looks.

- `ratio_llr`: Wald's SPRT on the canary's error-rate ratio r against the stable arm, conditioned
  on the errors seen. With n_c canary and n_b stable requests and E errors between them, the
  canary's share of the errors is Binomial(E, p) with p = n_c·r / (n_c·r + n_b) whatever the
  stable arm's own error rate is, so zero or rare errors are simply little evidence (never a
  division by zero, never a verdict). H0: r ≤ 1 against H1: r ≥ r1. The likelihood ratio is a
  non-negative supermartingale under H0, so by Ville's inequality it crosses 1/α with
  probability at most α, at any number of looks and across weight changes (each step's
  counts are conditioned on separately and the log-ratios add up).
- `rate_llr`: the one-sample version for one arm's error rate (Poisson): H0: λ ≤ λ0 against
  H1: λ ≥ r1·λ0. The guard uses it for the ceiling (`max_error_rate`) and for the floor (an
  error rate too small to matter, so that a canary with next to no errors in either arm can pass).
- `rank_test`: Mann-Whitney's rank statistic of the canary's latencies against the stable arm's
  (over histogram buckets, ties counted half), turned always-valid by a half-normal mixture of
  its normal approximation's likelihood ratios (a mixture SPRT): it crosses 1/α with
  probability at most α (asymptotically) when the canary is not slower.
- `bounds`: Wald's boundaries. Rejecting at log(1/α) is exact by Ville's inequality; accepting at
  log(β/(1-α)) keeps the chance of passing an arm at the alternative at about β (Wald).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    lower: float  # log-likelihood ratio at or below which H0 is accepted (pass)
    upper: float  # at or above which H0 is rejected (breach)


def bounds(alpha: float, beta: float) -> Bounds:
    """Wald's boundaries on the log-likelihood ratio: reject H0 at log(1/α), accept at log(β/(1-α))."""
    return Bounds(math.log(beta / (1 - alpha)), math.log(1 / alpha))


def ratio_llr(n_canary: int, e_canary: int, n_stable: int, e_stable: int, r1: float) -> float | None:
    """log LR of H1 (error-rate ratio r1) against H0 (ratio 1) for one step's counts, conditioned
    on its errors; None when either arm took no requests (nothing to compare)."""
    if n_canary <= 0 or n_stable <= 0:
        return None
    p0 = n_canary / (n_canary + n_stable)
    p1 = r1 * n_canary / (r1 * n_canary + n_stable)
    return e_canary * math.log(p1 / p0) + e_stable * math.log((1 - p1) / (1 - p0))


def rate_llr(n: int, errors: int, rate0: float, r1: float) -> float:
    """log LR of H1 (error rate r1·rate0) against H0 (rate0) for one arm's Poisson errors."""
    return errors * math.log(r1) - n * rate0 * (r1 - 1)


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))  # erfc: no cancellation far in the lower tail


def normal_quantile(p: float) -> float:
    """z with normal_cdf(z) = p, 0 < p < 1 (bisection: exact to 1e-9, no table)."""
    lo, hi = -40.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if normal_cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def chi2_quantile(p: float, df: int) -> float:
    """The chi-squared quantile (Wilson–Hilferty: within about 1 % from 3 degrees of freedom on)."""
    z = normal_quantile(p)
    k = float(max(1, df))
    return k * max(0.0, 1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


def same_distribution(name: str, a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...],
                      alpha: float) -> tuple[bool, str]:
    """Could two bucketed samples come from ONE distribution, at level α? (True, …) means the
    distance between them is within what chance makes at these sample sizes and says nothing.
    KS: the distance against the two-sample critical value sqrt(-ln(α/2)/2)·sqrt(1/n+1/m).
    PSI: Pearson's chi-squared test of homogeneity over the k buckets either sample uses
    (k-1 degrees of freedom; PSI itself, a smoothed symmetric KL divergence, has no exact law)."""
    n, m = sum(a), sum(b)
    if n <= 0 or m <= 0:
        return True, "an empty sample"
    if name == "ks":
        worst, ca, cb = 0.0, 0, 0
        for x, y in zip(a, b):
            ca, cb = ca + x, cb + y
            worst = max(worst, abs(ca / n - cb / m))
        critical = math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt(1 / n + 1 / m)
        return worst <= critical, f"chance alone reaches {critical:.3g} at these sizes"
    stat, used = 0.0, 0
    for x, y in zip(a, b):
        if x or y:
            used += 1
            ex, ey = (x + y) * n / (n + m), (x + y) * m / (n + m)
            stat += (x - ex) ** 2 / ex + (y - ey) ** 2 / ey
    critical = chi2_quantile(1 - alpha, used - 1)
    return stat <= critical, f"homogeneity chi-squared {stat:.1f}, chance alone reaches {critical:.1f}"


def _log_normal_cdf(z: float) -> float:
    if z > -30:
        return math.log(normal_cdf(z))
    return -z * z / 2 - math.log(-z * math.sqrt(2 * math.pi))  # Mills' ratio, where Φ underflows


@dataclass(frozen=True)
class Rank:
    auc: float  # P(a canary request is slower than a stable one), ties counted half
    z: float  # the normal approximation's z (0: nothing to tell)
    log_lr: float  # log of the half-normal mixture likelihood ratio (always-valid evidence)
    n_canary: int
    n_stable: int


def per_bucket(cumulative: list[int]) -> list[int]:
    """Per-bucket counts of a cumulative histogram (Prometheus' `le` buckets)."""
    return [c - (cumulative[i - 1] if i else 0) for i, c in enumerate(cumulative)]


def rank_test(canary: list[int], stable: list[int], tau: float = 0.1) -> Rank | None:
    """Mann-Whitney on per-bucket counts (the same buckets, fastest first), one-sided: is the
    canary slower? `tau` is the prior scale of the effect (AUC - 1/2) the mixture is tuned for.
    None when an arm has no requests or every request fell in one bucket (no information)."""
    nc, nb = sum(canary), sum(stable)
    if nc <= 0 or nb <= 0 or len(canary) != len(stable):
        return None
    u = 0.0
    below = 0
    ties = 0.0
    for c, b in zip(canary, stable):
        u += c * (below + b / 2)
        below += b
        t = c + b
        ties += t ** 3 - t
    n = nc + nb
    var_u = nc * nb / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if var_u <= 0:
        return None
    theta = u / (nc * nb) - 0.5
    v = var_u / (nc * nb) ** 2
    return Rank(theta + 0.5, theta / math.sqrt(v), _mixture_log_lr(theta, v, tau), nc, nb)


def _mixture_log_lr(x: float, v: float, tau: float) -> float:
    """log ∫ LR(θ) dπ(θ) for x ~ N(θ, v) and π half-normal(τ) on θ > 0: the mixture SPRT's
    evidence that θ > 0. Equals 2·sqrt(v/(v+τ²))·exp(μ²/2s²)·Φ(μ/s), μ = τ²x/(v+τ²), s² = τ²v/(v+τ²)."""
    s2 = tau * tau * v / (v + tau * tau)
    y = tau * tau * x / (v + tau * tau) / math.sqrt(s2)  # μ/s
    return math.log(2) + 0.5 * math.log(v / (v + tau * tau)) + y * y / 2 + _log_normal_cdf(y)
