"""The guard's decision core as a table: samples in, hold/advance/rollback/promote/wait out,
with the evidence. No server, no git."""

from __future__ import annotations

import pytest

from tether.core import guard
from tether.errors import UsageError
from tether.core.guard import Arm, GuardPolicy, Sample, State, bucket_counts, decide, ks, p95, parse_policy, psi, watch_alone
from tether.core.settings import Settings

POL = GuardPolicy(min_samples=50, failed_checks=1, steps=(10, 25, 50, 100), max_error_rate=0.01,
                  max_p95_latency=0.2, max_psi=0.25, max_ks=0.2)
LAT_FAST = ((0.01, 95), (0.1, 100), (float("inf"), 100))
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
    ("first failure is tolerated", State(10), Sample(arm(errors=5), arm(release="m@v1")), guard.HOLD, 10,
     ["error_rate"]),
    ("second failure rolls back", State(10, failures=1), Sample(arm(errors=5), arm(release="m@v1")),
     guard.ROLLBACK, 0, ["error_rate"]),
    ("slow p95 rolls back", State(25, failures=1), Sample(arm(lat=LAT_SLOW), arm(release="m@v1")),
     guard.ROLLBACK, 0, ["p95_latency"]),
    ("shifted scores, no errors", State(10, failures=1), Sample(arm(sc=HIGH), arm(release="m@v1"), LOW),
     guard.ROLLBACK, 0, ["psi_vs_stable", "ks_vs_stable", "psi_vs_eval", "ks_vs_eval"]),
    ("weight 0 is not watched", State(0), Sample(arm(errors=90), arm(release="m@v1")), guard.HOLD, 0, []),
]


@pytest.mark.parametrize("name,state,sample,action,weight,breached", CASES, ids=[c[0] for c in CASES])
def test_decision_table(name, state, sample, action, weight, breached):
    d = decide(POL, state, sample)
    assert (d.action, d.weight) == (action, weight), d.evidence
    assert [c.name for c in d.breached] == breached, d.evidence
    if breached:  # the evidence names each breached check, its value, threshold and counts
        for c in d.breached:
            assert f"{c.name}=" in d.evidence and f"max {c.threshold:g}" in d.evidence and "BREACH" in d.evidence
        assert "100 requests" in d.evidence


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
    ({"intervall": 5}, "guard.intervall"),
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
