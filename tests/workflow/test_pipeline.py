"""The reference pipeline: deterministic, retrains on conf/ edits, and composes Hydra overrides."""

import sys

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(__import__("project").REPO_ROOT / "src"))
from fraud_detector import data, train  # noqa: E402


def lock_md5s(p):
    lock = yaml.safe_load((p.root / "dvc.lock").read_text())
    return {(name, o["path"]): o.get("md5") for name, st in lock["stages"].items() for o in st.get("outs", [])}


def test_same_commit_and_params_give_a_bit_identical_bundle(project):
    before = lock_md5s(project)
    project.dvc("repro", "-f", "-q")
    assert lock_md5s(project) == before
    assert project.git("status", "--porcelain") == ""


def test_exp_run_composes_hydra_overrides_into_the_whole_tuple(project):
    before = lock_md5s(project)
    res = project.dvc("exp", "run", "-S", "preprocess=robust", "-S", "evaluate.threshold=0.7", "-S", "data.window=2")
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    assert params["preprocess"]["name"] == "robust"  # the compose stage kept DVC's composition
    assert params["evaluate"]["threshold"] == 0.7 and params["data"]["window"] == 2, res.out
    after = lock_md5s(project)
    for key in [("snapshot", "data/raw/transactions.parquet"), ("split", "data/split/eval.parquet"),
                ("train", "models/fraud-detector/model.skops"), ("evaluate", "models/fraud-detector/threshold.json")]:
        assert after[key] != before[key], key
    lock = yaml.safe_load((project.root / "dvc.lock").read_text())
    assert lock["stages"]["evaluate"]["params"]["params.yaml"]["evaluate"]["threshold"] == 0.7
    # conf/ still says otherwise: releasing this workspace as-is is refused until conf/ agrees
    err = project.tether("release", "--dry-run").err
    assert "params-conf" in err and "preprocess=robust" in err and "tether conf apply" in err, err


@pytest.fixture(scope="module")
def frames():
    raw = data.fraud_stream(window=1, rows=3000, fraud_rate=0.05, seed=3)
    return raw.iloc[:2000], raw.iloc[2000:]


def fit(frames, preprocess, model="logistic_regression"):
    tr, ev = frames
    feats = [c for c in tr.columns if c != data.TARGET]
    params = {"seed": 1, "model": {"name": model, "params": {}},
              "preprocess": {"name": preprocess, "clip_quantile": 0.01}}
    m = train.build(params, feats).fit(tr[feats], tr[data.TARGET])
    return m.predict_proba(ev[feats])[:, 1]


@pytest.mark.parametrize("model", ["logistic_regression", "random_forest"])
def test_robust_and_standard_preprocessing_predict_differently(frames, model):
    assert not np.allclose(fit(frames, "standard", model), fit(frames, "robust", model))


def test_the_stream_is_imbalanced_and_drifts_between_windows():
    w1 = data.fraud_stream(window=1, rows=20000, fraud_rate=0.03, seed=7)
    w3 = data.fraud_stream(window=3, rows=20000, fraud_rate=0.03, seed=7)
    assert 0.02 < w1[data.TARGET].mean() < 0.04
    fraud_amount = lambda w: w.loc[w[data.TARGET] == 1, "amount"].median()
    assert fraud_amount(w3) > 1.1 * fraud_amount(w1)
    pd.testing.assert_frame_equal(w1, data.fraud_stream(window=1, rows=20000, fraud_rate=0.03, seed=7))


def test_breast_cancer_is_the_real_second_dataset():
    frame = data.load({"name": "breast_cancer"}, seed=0)
    assert len(frame) == 569 and frame[data.TARGET].sum() == 212
