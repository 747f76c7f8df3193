"""Which way a metric is good (core/metricdir.py) and the regression gate that reads it: the
defaults from names, the declarations in the settings and their precedence, and the gate's
words (the direction it used, what it left out and why)."""

from __future__ import annotations

import pytest

from tether.core import gates
from tether.core.metricdir import HIGHER, INFO, LOWER, MetricPolicy, by_name
from tether.core.settings import Settings
from tether.errors import UsageError


@pytest.mark.parametrize(
    "name,way,why",
    [
        # counts: informational, never gated
        ("positives", INFO, "count"), ("negatives", INFO, "count"), ("count", INFO, "count"),
        ("rows", INFO, "count"), ("support", INFO, "count"), ("samples", INFO, "count"),
        ("n_eval", INFO, "count"), ("n_samples", INFO, "count"), ("num_rows", INFO, "count"),
        ("fraud_count", INFO, "count"), ("error_count", INFO, "count"), ("n_errors", INFO, "count"),
        ("false_positives", INFO, "count"), ("number_of_trees", INFO, "count"), ("eval_rows", INFO, "count"),
        ("TP", INFO, "count"),
        # settings and bookkeeping
        ("threshold", INFO, "setting"), ("best_threshold", INFO, "setting"), ("step", INFO, "bookkeeping"),
        ("epoch", INFO, "bookkeeping"), ("timestamp", INFO, "bookkeeping"), ("train_time", INFO, "bookkeeping"),
        ("duration_seconds", INFO, "bookkeeping"),
        # lower is better
        ("loss", LOWER, "name"), ("val_loss", LOWER, "name"), ("logloss", LOWER, "name"), ("log_loss", LOWER, "name"),
        ("mse", LOWER, "name"), ("mae", LOWER, "name"), ("rmse", LOWER, "name"), ("eval.rmse", LOWER, "name"),
        ("mean_absolute_error", LOWER, "name"), ("error_rate", LOWER, "name"), ("brier", LOWER, "name"),
        ("brier_score", LOWER, "name"), ("latency_ms", LOWER, "name"), ("p99_latency_seconds", LOWER, "name"),
        ("perplexity", LOWER, "name"), ("fpr", LOWER, "name"), ("false_positive_rate", LOWER, "name"),
        # the rest: higher is better
        ("f1", HIGHER, "default"), ("precision", HIGHER, "default"), ("recall", HIGHER, "default"),
        ("roc_auc", HIGHER, "default"), ("accuracy", HIGHER, "default"), ("r2", HIGHER, "default"),
        ("true_positive_rate", HIGHER, "default"), ("mAP", HIGHER, "default"),
    ],
)
def test_a_metric_nobody_declared_goes_by_its_name(name, way, why):
    d = by_name(name)
    assert (d.way, d.why) == (way, why)


@pytest.mark.parametrize(
    "policy,name,way,why",
    [
        (MetricPolicy((("positives", "higher"),)), "positives", HIGHER, "declared"),  # a declaration beats the name
        (MetricPolicy((("f1", "info"),)), "f1", INFO, "declared"),
        (MetricPolicy((("score", "lower"),)), "score", LOWER, "declared"),
        (MetricPolicy((("cost_*", "info"), ("cost_total", "lower"))), "cost_total", LOWER, "declared"),  # exact first
        (MetricPolicy((("cost_*", "info"), ("cost*", "lower"))), "cost_eur", INFO, "declared"),  # first pattern
        (MetricPolicy((), ("score",)), "score", LOWER, "lower_is_better"),
        (MetricPolicy((), (), ("f1",)), "recall", INFO, "unlisted"),  # gate_metrics: only these
        (MetricPolicy((), (), ("f1",)), "f1", HIGHER, "default"),
        (MetricPolicy((), (), ("f1", "positives")), "positives", HIGHER, "gate_metrics"),  # listed: gated
        (MetricPolicy((), (), ("rmse",)), "rmse", LOWER, "name"),
        (MetricPolicy((("loss", "lower"),), (), ("f1",)), "loss", LOWER, "declared"),  # metrics wins
        (MetricPolicy(), "positives", INFO, "count"),
    ],
)
def test_declarations_and_their_precedence(policy, name, way, why):
    d = policy.direction(name)
    assert (d.way, d.why) == (way, why)


def settings(**tether):
    return Settings.from_meta({"tether": tether})


def test_settings_read_the_declared_directions():
    s = settings(metrics={"positives": "info", "loss": "lower", "f1": "higher", "n_*": "info"})
    assert s.metric_policy.direction("loss").way == LOWER
    assert s.metric_policy.direction("n_whatever").why == "declared"
    # the old keys still work, and the old default list is now the name rule
    old = settings(lower_is_better=["score"], gate_metrics=["score", "f1"])
    assert old.metric_policy.direction("score").way == LOWER and old.metric_policy.direction("loss").way == INFO
    assert settings().metric_policy.direction("log_loss").way == LOWER


@pytest.mark.parametrize(
    "tether,words",
    [
        ({"metrics": ["f1"]}, "meta.tether.metrics in dvc.yaml must be a mapping"),
        ({"metrics": {"f1": "better"}}, "meta.tether.metrics.f1 in dvc.yaml must be higher, lower or info"),
        ({"metrics": {"f1": True}}, "meta.tether.metrics.f1"),
        ({"metrics": {"loss": "higher"}, "lower_is_better": ["loss"]}, "lower_is_better lists loss"),
        ({"metrics": {"f1": "info"}, "gate_metrics": ["f1"]}, "gate_metrics lists f1"),
        ({"metrcs": {"f1": "higher"}}, "did you mean metrics?"),
    ],
)
def test_a_wrong_declaration_is_a_usage_error_naming_the_key(tether, words):
    with pytest.raises(UsageError) as exc:
        settings(**tether)
    assert words in str(exc.value) + (exc.value.hint or "")


REF_V1 = {"roc_auc": 0.9079, "precision": 0.8, "recall": 0.0889, "f1": 0.16, "threshold": 0.7, "n_eval": 1500,
          "positives": 25, "predictions_sha256": "a" * 64}


@pytest.mark.parametrize(
    "current,candidate,policy,ok,words",
    [
        # the reference project's shape: a count moves a lot, f1 holds
        (REF_V1, {**REF_V1, "positives": 46, "n_eval": 3000, "f1": 0.161}, MetricPolicy(), True,
         "no metric regresses more than 5% (higher is better: f1, precision, recall, roc_auc); "
         "not gated: n_eval, positives (counts); threshold (a setting, not a measure)"),
        (REF_V1, {**REF_V1, "f1": 0.10}, MetricPolicy(), False, "f1 0.16 → 0.1 (-37.5%, higher is better)"),
        # a declared count that is gated after all
        (REF_V1, {**REF_V1, "positives": 20}, MetricPolicy((("positives", "higher"),)), False,
         "positives 25 → 20 (-20.0%, higher is better)"),
        # lower is better, by name and by declaration
        ({"loss": 1.0}, {"loss": 1.04}, MetricPolicy(), True, "(lower is better: loss)"),
        ({"loss": 1.0}, {"loss": 1.10}, MetricPolicy(), False, "loss 1 → 1.1 (+10.0%, lower is better)"),
        ({"loss": 1.0}, {"loss": 0.5}, MetricPolicy(), True, "lower is better: loss"),
        ({"score": 1.0}, {"score": 1.2}, MetricPolicy((("score", "lower"),)), False, "score 1 → 1.2"),
        ({"score": 1.0}, {"score": 1.2}, MetricPolicy(), True, "higher is better: score"),
        # declared info: never gated, and said so
        ({"f1": 0.8, "cost": 10}, {"f1": 0.8, "cost": 99}, MetricPolicy((("cost", "info"),)), True,
         "not gated: cost (declared info)"),
        ({"f1": 0.8, "recall": 0.9}, {"f1": 0.8, "recall": 0.1}, MetricPolicy((), (), ("f1",)), True,
         "not gated: recall (not in gate_metrics)"),
    ],
)
def test_the_regression_gate_names_directions_and_what_it_left_out(current, candidate, policy, ok, words):
    g = gates.regression(current, candidate, 0.05, policy=policy)
    assert g.ok is ok and not g.warning, g
    assert words in g.message, g.message


def test_only_informational_metrics_in_common_is_a_warning_not_an_ok():
    g = gates.regression({"positives": 25, "n_eval": 10}, {"positives": 90, "n_eval": 10}, 0.05)
    assert g.ok and g.warning and g.status == "warn"
    assert g.message == ("could not compare: every metric the two releases share is informational; "
                         "not gated: n_eval, positives (counts)")
    assert "meta.tether.metrics" in (g.hint or "")


def test_the_old_positional_call_still_works():
    assert gates.regression({"score": 1.0}, {"score": 1.1}, 0.05, ("score",)).ok is False
    assert gates.regression({"f1": 0.8, "recall": 0.9}, {"f1": 0.8, "recall": 0.1}, 0.05, (), ("f1",)).ok is True
