"""Gates that know what a metric means, and a rollback that a re-promotion must answer (issue 30,
item 7). On real repositories: the reference project, a project shaped like it whose metrics a
test sets (tests/helpers/metricshape.py), and one shaped unlike it (reports/metrics.json with a
loss and a count); the rollback rule also in a teammate's fresh clone of the bare origin, and
against trailers written by hand on commits tether did not make."""

from __future__ import annotations

import pytest

from metricshape import build_metricshape, release, set_metrics
from project import Project
from shapes import clone

V1, V2 = "fraud-detector@v1.0.0", "fraud-detector@v1.1.0"
REASON = "alert: false positives up"


def promote(p: Project, tag: str, *extra: str, cwd=None, approver: str = "ci"):
    return p.tether("promote", tag, "--env", "production", "--approver", approver, "--reason", "test", *extra,
                    cwd=cwd)


def ok(res) -> str:
    assert res.code == 0, res.out + res.err
    return res.out


# -- 1. the regression gate: what a metric means ---------------------------------------------------
def test_the_reference_project_says_which_metrics_it_gates_and_which_not(project):
    ok(project.tether("promote", V1, "--env", "staging", "--approver", "ci", "--reason", "r"))
    v2 = project.release_code_change("v2")  # same metrics as v1.0.0
    res = project.tether("promote", v2, "--env", "staging", "--approver", "ci", "--reason", "r", "--dry-run")
    out = ok(res)
    assert "gate regression: ok - no metric regresses more than 5% (higher is better: f1, precision, recall, " \
           "roc_auc); not gated: n_eval, positives (counts); threshold (a setting, not a measure)" in out, out


def test_a_count_that_moves_a_lot_is_not_gated_while_f1_still_is(tmp_path):
    p = build_metricshape(tmp_path / "p", "reference")
    ok(promote(p, V1))
    set_metrics(p, 2, positives=46, n_eval=3000, f1=0.161)  # positives +84 %, f1 holds
    v2 = release(p)
    out = ok(promote(p, v2))
    assert ("gate regression: ok - no metric regresses more than 5% (higher is better: f1, precision, recall, "
            "roc_auc); not gated: n_eval, positives (counts); threshold (a setting, not a measure)") in out, out
    set_metrics(p, 3, f1=0.10)  # a quality metric that drops is still refused
    v3 = release(p)
    before = p.refs()
    res = promote(p, v3)
    assert res.code == 5, res.out + res.err
    assert "regression: metrics regress more than 5%: f1 0.161 → 0.1 (-37.9%, higher is better)" in res.err
    assert "positives" not in res.err.split("hint")[0] and p.refs() == before


def test_a_project_unlike_the_reference_gates_its_loss_and_declared_lower_metric(tmp_path):
    p = build_metricshape(tmp_path / "p", "reports")  # reports/metrics.json: loss, rmse, score, n_samples
    ok(promote(p, "regressor@v1.0.0"))
    set_metrics(p, 2, n_samples=4000, loss=0.39)  # more samples, a slightly better loss
    v2 = release(p)
    out = ok(promote(p, v2))
    assert ("gate regression: ok - no metric regresses more than 5% (lower is better: loss, rmse, score); "
            "not gated: n_samples (declared info)") in out, out
    set_metrics(p, 3, score=11.0)  # declared lower (meta.tether.metrics: {score: lower}), and it rises
    v3 = release(p)
    res = promote(p, v3)
    assert res.code == 5, res.out + res.err
    assert "metrics regress more than 5%: score 10 → 11 (+10.0%, lower is better)" in res.err, res.err
    set_metrics(p, 4, score=10.0, loss=0.5)  # lower by its name
    res = promote(p, release(p))
    assert res.code == 5 and "loss 0.39 → 0.5 (+28.2%, lower is better)" in res.err, res.err


def test_a_declaration_that_contradicts_the_old_keys_is_refused_naming_it(tmp_path):
    p = build_metricshape(tmp_path / "p", "reports")
    y = p.root / "dvc.yaml"
    y.write_text(y.read_text().replace("metrics: {score: lower, \"n_*\": info}",
                                       "metrics: {score: lower, loss: info}\n        gate_metrics: [loss]"))
    p.commit_all("contradiction")
    res = promote(p, "regressor@v1.0.0")
    assert res.code == 2, res.out + res.err
    assert "meta.tether.metrics.loss in dvc.yaml must be higher or lower: gate_metrics lists loss" in res.err


# -- 2. re-promoting what an environment was rolled back away from --------------------------------
def rolled_back(tmp_path) -> tuple[Project, str]:
    """v1 then v2 in production, then production rolled back to v1 by sam; all pushed. Returns
    the project and the rollback's commit."""
    p = build_metricshape(tmp_path / "p", "reference")
    ok(promote(p, V1, "--push"))
    set_metrics(p, 2)
    assert release(p) == V2
    ok(promote(p, V2, "--push"))
    ok(p.tether("rollback", "--env", "production", "--approver", "sam", "--reason", REASON, "--push"))
    return p, p.git("rev-parse", "production")


def assert_refused(p: Project, rollback: str, *extra: str, cwd=None) -> str:
    before = p.refs() if cwd is None else p.git("for-each-ref", cwd=cwd)
    res = promote(p, V2, *extra, cwd=cwd)
    assert res.code == 5, res.out + res.err
    assert (f"promote refused: rolled-back: production was rolled back away from {V2} by sam at ") in res.err, res.err
    assert f"(move {rollback[:12]}, to {V1}): \"{REASON}\"" in res.err, res.err
    assert "--override-rollback 'alert: false positives up: <why it is safe now>'" in res.err, res.err
    assert (p.refs() if cwd is None else p.git("for-each-ref", cwd=cwd)) == before
    return res.err


def test_a_rolled_back_release_needs_an_override_that_quotes_the_reason(tmp_path):
    p, rollback = rolled_back(tmp_path)
    assert_refused(p, rollback)
    # a normal promotion of another release in between does not clear it
    set_metrics(p, 3)
    v3 = release(p)
    ok(promote(p, v3, "--push"))
    assert_refused(p, rollback)
    # an override that does not name the reason does not pass
    err = assert_refused(p, rollback, "--override-rollback", "it is fine now")
    assert "--override-rollback \"it is fine now\" does not quote that reason" in err
    text = "Alert: false positives up: the upstream feed is fixed"
    out = ok(promote(p, V2, "--override-rollback", text, "--push"))
    assert f"gate rolled-back: ok - overridden: production was rolled back away from {V2} by sam" in out, out
    body = p.git("log", "-1", "--format=%B", "production")
    assert f"Tether-Override-Rollback: {text}" in body and f"Tether-Override-Rollback-Move: {rollback}" in body
    hist = ok(p.tether("history", "--env", "production"))
    assert f"[override-rollback: {text}]" in hist, hist
    # once overridden, a later re-promotion is not blocked again (the rollback is answered) ...
    ok(promote(p, v3, "--push"))
    out = ok(promote(p, V2, "--push"))
    assert f"overridden when ci promoted it again at" in out and f"\"{text}\"" in out, out
    assert "Tether-Override-Rollback" not in p.git("log", "-1", "--format=%B", "production")
    # ... until production is rolled back away from it again
    ok(p.tether("rollback", "--env", "production", "--approver", "sam", "--reason", "latency alert", "--push"))
    res = promote(p, V2)
    assert res.code == 5 and "\"latency alert\"" in res.err, res.err


def test_the_block_and_its_override_hold_in_a_teammates_fresh_clone(tmp_path):
    p, rollback = rolled_back(tmp_path)
    c = clone(p, tmp_path / "teammate")  # only origin's branches and tags
    assert_refused(p, rollback, cwd=c)
    res = promote(p, V2, "--override-rollback", f"{REASON}, fixed in the feed", "--push", cwd=c, approver="kim")
    assert res.code == 0 and "gate rolled-back: ok - overridden:" in res.out, res.out + res.err
    # the author's clone reads the teammate's override from origin: answered, not blocked again
    p.git("fetch", "-q", "origin")
    hist = ok(p.tether("history", "--env", "production", "--json"))
    assert f"\"Tether-Override-Rollback\": \"{REASON}, fixed in the feed\"" in hist
    set_metrics(p, 3)
    ok(promote(p, release(p), "--push"))
    out = ok(promote(p, V2, "--dry-run"))
    assert "overridden when kim promoted it again" in out, out


def forge(p: Project, release: str, tree_of: str, trailers: dict[str, str]) -> str:
    """A commit on production made by hand (one parent: production's head), carrying tether's
    trailers as text: what someone could push without tether."""
    body = "forged by hand\n\n" + "\n".join(f"{k}: {v}" for k, v in trailers.items()) + "\n"
    commit = p.git("commit-tree", f"{tree_of}^{{tree}}", "-p", "production", "-m", body)
    p.git("update-ref", "refs/heads/production", commit)
    return commit


@pytest.mark.parametrize("case", ["create", "clear"])
def test_trailers_written_by_hand_neither_create_nor_clear_the_block(tmp_path, case):
    p = build_metricshape(tmp_path / "p", "reference")
    ok(promote(p, V1))
    set_metrics(p, 2)
    assert release(p) == V2
    ok(promote(p, V2))
    obj = {t: p.git("rev-parse", t) for t in (V1, V2)}
    if case == "create":  # a hand "rollback" away from v2: no block
        fake = forge(p, V1, V1, {"Tether-Action": "rollback", "Tether-Release": V1, "Tether-Tag-Object": obj[V1],
                                 "Tether-Previous": V2, "Tether-Approver": "mallory", "Tether-Reason": "forged"})
        out = ok(promote(p, V2))
        assert f"gate rolled-back: ok - production was never rolled back away from {V2} (not counted: " \
               f"{fake[:12]} (its parents are not [the move below it, the release's commit])" in out, out
        return
    ok(p.tether("rollback", "--env", "production", "--approver", "sam", "--reason", REASON))
    rollback = p.git("rev-parse", "production")
    fake = forge(p, V2, V2, {"Tether-Action": "promote", "Tether-Release": V2, "Tether-Tag-Object": obj[V2],
                             "Tether-Previous": V1, "Tether-Approver": "mallory", "Tether-Reason": "forged",
                             "Tether-Override-Rollback": REASON, "Tether-Override-Rollback-Move": rollback})
    set_metrics(p, 3)
    ok(promote(p, release(p)))
    err = assert_refused(p, rollback)
    assert f"not counted: {fake[:12]} (its parents are not" in err, err
