"""Table tests for reprocompare (pure): the verdicts `tether reproduce` prints and exits on."""

from __future__ import annotations

import pytest

from tether.core import reprocompare as rc

MANIFEST = {"components": {"threshold": {"value": 0.3}},
            "metrics": {"f1": 0.27, "roc_auc": 0.86, "n_eval": 1500, "predictions_sha256": "ab" * 32}}


def check(path, part, expected="e", actual="e", files=()):
    return rc.OutputCheck(path, part, "sha256", expected, actual, tuple(files))


def test_everything_equal_is_identical():
    checks = [check("m/model.skops", "weights"), check("d/eval.parquet", "data"), check("m/threshold.json", "threshold"),
              check("m/metrics.json", "metrics")]
    v = rc.decide(checks, MANIFEST, dict(MANIFEST["metrics"]), 0.3, [])
    assert v.identical and v.differing() == []
    assert {p: x.state for p, x in v.parts.items()} == dict.fromkeys(rc.PARTS, "identical")


@pytest.mark.parametrize("change, part, named", [
    ({"weights": ("x", "y")}, "weights", "m/model.skops"),
    ({"metrics_value": {"f1": 0.28}}, "metrics", "f1: 0.27 → 0.28"),
    ({"threshold_value": 0.25}, "threshold", "value: 0.3 → 0.25"),
    ({"predictions": "cd" * 32}, "predictions", "predictions_sha256: " + "ab" * 32 + " → " + "cd" * 32),
])
def test_one_difference_names_its_part_and_what_differs(change, part, named):
    exp, act = change.get("weights", ("e", "e"))
    metrics = {**MANIFEST["metrics"], **change.get("metrics_value", {})}
    if "predictions" in change:
        metrics["predictions_sha256"] = change["predictions"]
    checks = [check("m/model.skops", "weights", exp, act)]
    v = rc.decide(checks, MANIFEST, metrics, change.get("threshold_value", 0.3), [])
    assert v.differing() == [part]
    assert named in v.parts[part].files


def test_a_missing_output_or_digest_never_counts_as_identical():
    assert not rc.OutputCheck("a", "data", "md5", None, None).identical
    assert not rc.OutputCheck("a", "data", "md5", "x", None).identical


def test_nothing_recorded_is_not_a_difference():
    v = rc.decide([], {"components": {"threshold": {"value": None}}, "metrics": {}}, None, None, [])
    assert v.identical
    assert v.parts["predictions"].state == "not-recorded" and v.parts["metrics"].state == "not-recorded"


def test_listing_diff_names_changed_added_and_removed_files():
    a = [{"relpath": "model.pkl", "md5": "1"}, {"relpath": "threshold.json", "md5": "2"}, {"relpath": "old", "md5": "3"}]
    b = [{"relpath": "model.pkl", "md5": "9"}, {"relpath": "threshold.json", "md5": "2"}, {"relpath": "new", "md5": "4"}]
    assert rc.listing_diff(a, b, "models/x") == ("models/x/model.pkl", "models/x/new", "models/x/old")
    assert rc.listing_diff(None, b, "models/x") == ("models/x/",)  # a listing unknown: the directory


def test_runtime_diff_names_python_and_each_package():
    recorded = {"python": "3.11.7", "packages": {"numpy": "2.1.0", "scikit-learn": "1.5.0", "gone": "1"}}
    now = {"python": "3.12.1", "packages": {"numpy": "2.1.0", "scikit-learn": "1.6.1", "new": "2"}}
    assert rc.runtime_diff(recorded, now) == ["python 3.11.7 → 3.12.1", "gone 1 → (absent)", "new (absent) → 2",
                                              "scikit-learn 1.5.0 → 1.6.1"]
    assert rc.runtime_diff(recorded, recorded) == []
    assert rc.runtime_diff({"lock_sha256": "x"}, now) == []  # recorded none: nothing to hold it to
