"""The guard's decision core as a table: samples in, hold/advance/rollback/promote/wait out,
with the evidence. No server, no git."""

from __future__ import annotations

import math

import pytest

from tether.core import guard
from tether.errors import UsageError
from tether.core.guard import Arm, GuardPolicy, Sample, State, bucket_counts, decide, ks, p95, parse_policy, psi, watch_alone
from tether.core.settings import Settings

POL = GuardPolicy(min_samples=50, failed_checks=1, steps=(10, 25, 50, 100), max_error_rate=0.01,
                  max_p95_latency=0.2, max_psi=0.25, max_ks=0.2, error_floor=0.05)  # 0 errors in 60 pass the floor
LAT_FAST = ((0.01, 95), (0.1, 100), (1.0, 100), (float("inf"), 100))
LAT_SLOW = ((0.01, 10), (0.1, 50), (1.0, 100), (float("inf"), 100))


def scores(values, n=1) -> tuple:
    return tuple(c * n for c in bucket_counts(values))


LOW = scores([0.02, 0.03, 0.2, 0.5, 0.97], 20)  # 100 scores
HIGH = scores([0.5, 0.55, 0.6, 0.52, 0.58], 20)  # the same model with its scores squeezed to the middle


def arm(requests=100, errors=0, lat=LAT_FAST, sc=LOW, release="m@v2") -> Arm:
    scaled = tuple((b, c * requests // 100) for b, c in lat)
    return Arm(release, requests, errors, scaled, tuple(c * requests // 100 for c in sc))


CASES = [
    # (name, state, sample, action, weight, breached)
    ("too little data holds", State(10), Sample(arm(requests=49), arm(release="m@v1")), guard.HOLD, 10, []),
    ("healthy advances", State(10), Sample(arm(), arm(release="m@v1"), LOW), guard.ADVANCE, 25, []),
    ("healthy at 50 advances to 100", State(50), Sample(arm(), arm(release="m@v1")), guard.ADVANCE, 100, []),
    ("healthy at the last step promotes", State(100), Sample(arm(), arm(release="m@v1")), guard.PROMOTE, 100, []),
    ("first failure is tolerated", State(10), Sample(arm(errors=10), arm(release="m@v1")), guard.HOLD, 10,
     ["error_rate"]),
    ("second failure rolls back", State(10, failures=1), Sample(arm(errors=10), arm(release="m@v1")),
     guard.ROLLBACK, 0, ["error_rate"]),
    ("slower than stable, p95 over budget, rolls back", State(25, failures=1),
     Sample(arm(lat=LAT_SLOW), arm(release="m@v1")), guard.ROLLBACK, 0, ["latency"]),
    ("slow p95 alone rolls back", State(25, failures=1), Sample(arm(lat=LAT_SLOW), None),
     guard.ROLLBACK, 0, ["p95_latency"]),
    ("as slow as the stable arm is no breach", State(25), Sample(arm(lat=LAT_SLOW), arm(release="m@v1", lat=LAT_SLOW)),
     guard.ADVANCE, 50, []),
    ("shifted scores, no errors", State(10, failures=1), Sample(arm(sc=HIGH), arm(release="m@v1"), LOW),
     guard.ROLLBACK, 0, ["psi_vs_stable", "ks_vs_stable", "psi_vs_eval", "ks_vs_eval"]),
    ("weight 0 is not watched", State(0), Sample(arm(errors=90), arm(release="m@v1")), guard.HOLD, 0, []),
]


# the sequential tests, at the defaults (α 0.01, β 0.05, ratio 2, floor 0.0001, ceiling 0.005): canary
# and stable counts at weight 10, the stable arm's error rate mostly 0.1 %
SEQ = GuardPolicy(min_samples=50)
STATS = [
    # (name, state, (canary requests, errors), (stable requests, errors), action, breached, pending)
    ("clear good: the same error rate", State(10), (20_000, 20), (180_000, 180), guard.ADVANCE, [], []),
    ("clear bad: 5x the errors, then rolled back", State(10, failures=1), (20_000, 50), (180_000, 90),
     guard.ROLLBACK, ["error_ratio"], []),
    ("clear bad: the first breach is tolerated", State(10), (20_000, 50), (180_000, 90), guard.HOLD,
     ["error_ratio"], []),
    ("5x and at the ceiling: both tests breach", State(10, failures=1), (20_000, 100), (180_000, 180),
     guard.ROLLBACK, ["error_rate", "error_ratio"], []),
    ("zero errors in both arms: continue", State(10), (5_000, 0), (45_000, 0), guard.HOLD, [], ["error_ratio"]),
    ("zero errors, enough canary requests to pass the floor", State(10), (40_000, 0), (360_000, 0), guard.ADVANCE,
     [], []),
    ("not enough data: continue", State(10), (1_000, 1), (9_000, 9), guard.HOLD, [], ["error_ratio"]),
    ("slightly worse, not yet shown: continue", State(10), (20_000, 30), (180_000, 180), guard.HOLD, [],
     ["error_ratio"]),
    ("earlier steps' evidence adds up", State(25, failures=1, llr=4.5), (20_000, 32), (60_000, 60),
     guard.ROLLBACK, ["error_ratio"], []),
    ("stable errors only: the canary is better", State(10), (20_000, 0), (180_000, 200), guard.ADVANCE, [], []),
    ("weight 100, no stable traffic: the ceiling alone", State(100), (500, 0), (0, 0), guard.PROMOTE, [], []),
    ("weight 100, a few stable requests left: not compared", State(100), (500, 0), (30, 0), guard.PROMOTE, [], []),
    ("over the ceiling with the stable arm as bad", State(10, failures=1), (2_000, 40), (18_000, 360),
     guard.ROLLBACK, ["error_rate"], []),
]


@pytest.mark.parametrize("name,state,canary,stable,action,breached,pending", STATS, ids=[c[0] for c in STATS])
def test_sequential_error_tests_table(name, state, canary, stable, action, breached, pending):
    d = decide(SEQ, state, Sample(arm(*canary), arm(*stable, release="m@v1")))
    assert d.action == action, d.evidence
    assert [c.name for c in d.breached] == breached, d.evidence
    assert [c.name for c in d.checks if c.pending] == pending, d.evidence
    ratio = next(c for c in d.checks if c.name == "error_ratio")
    if stable[0] and state.weight < 100:  # the evidence: the counts, the log-LR, its bounds, the design error rates
        assert f"canary {canary[1]} errors of {canary[0]} requests, stable {stable[1]} of {stable[0]}" in d.evidence
        assert "rolls back at ≥ 5.30" in d.evidence and "passes at ≤ -2.99" in d.evidence
        assert "false rollback ≤ 0.005" in d.evidence and "2× canary ≈ 0.05" in d.evidence
        assert ratio.threshold == pytest.approx(5.298, abs=1e-3) and ratio.lower == pytest.approx(-2.990, abs=1e-3)
    if action == guard.ADVANCE:  # the rollout's evidence goes on to the next step
        assert d.state.llr == ratio.value and d.state.weight == 25
    if pending:
        assert "continue" in d.why and d.state.failures == 0


def test_the_ratio_log_likelihood_ratio_is_the_binomial_one():
    from tether.core.seqtest import ratio_llr

    # 1 canary and 9 stable requests per 10: p0 = 0.1, p1 = 2/11
    assert ratio_llr(1_000, 3, 9_000, 7, 2.0) == pytest.approx(3 * math.log(20 / 11) + 7 * math.log((9 / 11) / 0.9))
    assert ratio_llr(1_000, 0, 9_000, 0, 2.0) == 0  # no errors: no evidence either way
    assert ratio_llr(0, 0, 9_000, 5, 2.0) is None and ratio_llr(10, 1, 0, 0, 2.0) is None


@pytest.mark.parametrize("name,state,sample,action,weight,breached", CASES, ids=[c[0] for c in CASES])
def test_decision_table(name, state, sample, action, weight, breached):
    d = decide(POL, state, sample)
    assert (d.action, d.weight) == (action, weight), d.evidence
    assert [c.name for c in d.breached] == breached, d.evidence
    if breached:  # the evidence names each breached check, its value, threshold and counts
        for c in d.breached:  # a sequential test shows its log-LR and the bound it crossed
            shown = (f"{c.name}: ", f"{c.threshold:.2f}") if c.test else (f"{c.name}=", f"max {c.threshold:g}")
            assert all(part in d.evidence for part in shown) and "BREACH" in d.evidence
        assert "100 requests" in d.evidence or "100 canary requests" in d.evidence


def test_counts_since_the_step_began_not_since_the_server_started():
    base = arm(requests=100, errors=5)
    now = Arm("m@v2", 130, 5, tuple((b, c + 30) for b, c in base.latency), tuple(
        a + b for a, b in zip(base.scores, scores([0.02] * 30))))
    d = decide(POL, State(10, baseline=base), Sample(now, None))
    assert d.action == guard.HOLD and "30 of 50" in d.why  # the 5 old errors are not this step's
    restarted = arm(requests=60)
    d = decide(POL, State(10, baseline=base), Sample(restarted, None))
    assert d.action == guard.ADVANCE  # counters went backwards: a restart, all of them count


def test_manual_policies_wait_for_a_human():
    manual = GuardPolicy(min_samples=50, promote="manual", rollback="manual", max_error_rate=0.01)
    d = decide(manual, State(100), Sample(arm(), None))
    assert d.action == guard.WAIT and "human" in d.why
    d = decide(manual, State(10, failures=5), Sample(arm(errors=10), None))
    assert d.action == guard.WAIT and d.breached and d.weight == 10


def test_one_environment_alone_never_advances_and_rolls_back_on_breach():
    d = watch_alone(POL, State(100), Sample(arm(), None, LOW))
    assert d.action == guard.HOLD and "healthy" in d.why
    d = watch_alone(POL, State(100, failures=1), Sample(arm(sc=HIGH), None, LOW))
    assert d.action == guard.ROLLBACK and [c.name for c in d.breached] == ["psi_vs_eval", "ks_vs_eval"]


def test_statistics():
    assert psi(LOW, LOW) == 0 and ks(LOW, LOW) == 0
    assert psi(LOW, HIGH) > 1 and 0.5 < ks(LOW, HIGH) <= 1
    assert p95(LAT_FAST) == 0.01 and p95(LAT_SLOW) == 1.0 and p95(()) is None
    assert sum(bucket_counts([0.0, 0.05, 0.051, 1.0, 7.0])) == 5 and bucket_counts([7.0])[-1] == 1


@pytest.mark.parametrize("raw,key", [
    ({"steps": [10, 50]}, "guard.steps"), ({"steps": [50, 10, 100]}, "guard.steps"), ({"steps": "10"}, "guard.steps"),
    ({"min_samples": 0}, "guard.min_samples"), ({"min_samples": True}, "guard.min_samples"),
    ({"max_psi": "0.2"}, "guard.max_psi"), ({"max_psi": -1}, "guard.max_psi"), ({"promote": "yes"}, "guard.promote"),
    ({"intervall": 5}, "guard.intervall"), ({"alpha": 0}, "guard.alpha"), ({"alpha": 0.5}, "guard.alpha"),
    ({"beta": "0.1"}, "guard.beta"), ({"error_ratio": 1}, "guard.error_ratio"), ({"error_floor": -1}, "guard.error_floor"),
])
def test_bad_policies_are_usage_errors_naming_the_key(raw, key):
    with pytest.raises(UsageError) as exc:
        parse_policy(raw)
    assert exc.value.exit_code == 2 and key in exc.value.message


def test_settings_validate_canary_pairs_and_the_policy():
    s = Settings.from_meta({"tether": {"environments": ["staging", "canary", "production"],
                                       "canaries": {"canary": "production"}, "guard": {"steps": [5, 100]}}})
    assert s.canaries == {"canary": "production"} and s.guard.steps == (5, 100)
    for bad in ({"canaries": {"canary": "production"}},  # canary not an environment
                {"environments": ["canary", "production"], "canaries": {"canary": "canary"}},
                {"environments": ["canary", "production"], "canaries": ["canary"]},
                {"guard": [1]}):
        with pytest.raises(UsageError):
            Settings.from_meta({"tether": bad})


@pytest.mark.parametrize("text", ["101", "-1", "1.5", "ten", "", "١٠", "1e1", " 5x"])
def test_a_weight_is_an_ascii_whole_percentage(text):
    from tether.core.moves import parse_weight

    with pytest.raises(UsageError):
        parse_weight(text)


@pytest.mark.parametrize("text,value", [("0", 0), ("5", 5), (" 100 ", 100)])
def test_good_weights_parse(text, value):
    from tether.core.moves import parse_weight

    assert parse_weight(text) == value


def test_the_rank_test_on_latency_buckets():
    from tether.core.seqtest import per_bucket, rank_test

    same = rank_test([50, 30, 20], [500, 300, 200])
    assert same is not None and same.auc == pytest.approx(0.5) and same.z == pytest.approx(0) and same.log_lr < 0
    slower = rank_test([10, 30, 60], [500, 300, 200])
    assert slower is not None and slower.auc > 0.7 and slower.z > 5 and slower.log_lr > 6.4
    faster = rank_test([60, 30, 10], [200, 300, 500])
    assert faster is not None and faster.auc < 0.3 and faster.log_lr < 0  # one-sided: faster is no evidence
    assert rank_test([100, 0], [900, 0]) is None  # every request in one bucket: ties only, no information
    assert rank_test([0, 0], [10, 5]) is None and rank_test([1, 2], [1, 2, 3]) is None
    extreme = rank_test([0, 0, 100_000], [1_000_000, 0, 0])  # far beyond any bound, and a number
    assert extreme is not None and math.isfinite(extreme.log_lr) and extreme.log_lr > 100
    far_faster = rank_test([100_000, 0, 0], [0, 0, 1_000_000])
    assert far_faster is not None and math.isfinite(far_faster.log_lr) and far_faster.log_lr < 0
    assert per_bucket([5, 5, 12]) == [5, 0, 7]


def test_the_ceiling_rolls_back_a_canary_at_it_and_not_one_at_half_of_it():
    pol = GuardPolicy(min_samples=50, max_error_rate=0.01)
    at = decide(pol, State(100, failures=1), Sample(arm(requests=5_000, errors=50), None))
    assert at.action == guard.ROLLBACK and [c.name for c in at.breached] == ["error_rate"], at.evidence
    assert "log-LR +9.66 for a rate at the ceiling 0.01 against one at 0.005" in at.evidence
    half = decide(pol, State(100, failures=1), Sample(arm(requests=5_000, errors=25), None))
    assert half.action == guard.PROMOTE and not half.breached, half.evidence
    strict = GuardPolicy(min_samples=50, max_error_rate=0)  # 0: any error is a breach
    assert decide(strict, State(100, failures=1), Sample(arm(requests=5_000, errors=1), None)).action == guard.ROLLBACK


def test_the_design_error_rates_are_settings_and_recorded_with_a_move():
    s = Settings.from_meta({"tether": {"guard": {"alpha": 0.001, "beta": 0.1, "error_ratio": 3, "error_floor": 0}}})
    assert (s.guard.alpha, s.guard.beta, s.guard.error_ratio, s.guard.error_floor) == (0.001, 0.1, 3.0, 0.0)
    line = guard.policy_line(s.guard)
    assert "alpha=0.001 beta=0.1 error_ratio=3 error_floor=0" in line
    # a stricter α moves the bound that rolls back: ln(2/α) for the ratio test
    d = decide(s.guard, State(10), Sample(arm(20_000, 20), arm(180_000, 180, release="m@v1")))
    assert "rolls back at ≥ 7.60" in d.evidence and "false rollback ≤ 0.0005" in d.evidence


def test_the_quantiles_and_the_tests_of_one_distribution():
    from tether.core import seqtest

    assert abs(seqtest.normal_quantile(0.975) - 1.959964) < 1e-5
    assert abs(seqtest.chi2_quantile(0.99, 20) - 37.566) / 37.566 < 0.01
    assert abs(seqtest.chi2_quantile(0.95, 5) - 11.070) / 11.070 < 0.01
    a, b = (50, 50) + (0,) * 19, (60, 40) + (0,) * 19
    # 60/40 against 50/50 in 100 each: KS 0.1 under 1.358·sqrt(2/100) = 0.192; chi-squared 2.02 under 3.84
    assert seqtest.same_distribution("ks", a, b, 0.05)[0] and seqtest.same_distribution("psi", a, b, 0.05)[0]
    c = (80, 20) + (0,) * 19
    assert not seqtest.same_distribution("ks", a, c, 0.05)[0] and not seqtest.same_distribution("psi", a, c, 0.05)[0]
    assert seqtest.same_distribution("psi", a, (0,) * 21, 0.01)[0]  # nothing to compare: no evidence


def test_two_samples_of_one_distribution_are_not_a_breach_but_a_shift_is():
    """With about 100 scores over 21 buckets, chance alone puts PSI near the default limit of
    0.25: the checks judge a distance only beyond the sampling noise at those sizes."""
    import random

    rng = random.Random(5)
    pol = GuardPolicy()
    weights = [1, 2, 4, 6, 8, 9, 9, 8, 7, 6, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1]
    breaches = raw = 0
    for _ in range(400):
        a = bucket_counts(rng.choices([0.05 * i + 0.01 for i in range(21)], weights, k=120))
        b = bucket_counts(rng.choices([0.05 * i + 0.01 for i in range(21)], weights, k=120))
        stable = Arm(requests=1000, scores=b)
        canary = Arm(requests=120, scores=a)
        found = {c.name: c for c in guard.checks(pol, canary, stable, ())}
        raw += psi(a, b) > pol.max_psi or ks(a, b) > pol.max_ks
        breaches += not (found["psi_vs_stable"].ok and found["ks_vs_stable"].ok)
    assert raw > 300, f"the fixed limits alone breach {raw} of 400 identical pairs: this test needs noise to beat"
    assert breaches <= 4, f"{breaches} of 400 identical pairs breached"
    shifted = {c.name: c for c in guard.checks(pol, Arm(requests=100, scores=HIGH),
                                               Arm(requests=1000, scores=LOW), ())}
    assert not shifted["psi_vs_stable"].ok and not shifted["ks_vs_stable"].ok
    assert "chance alone reaches" in shifted["psi_vs_stable"].detail
