"""The whole lifecycle on repositories shaped unlike the reference project (the model-shape
issue's "Done when"): release → promote → deploy → rollback → a fresh clone's
`git checkout production && dvc pull`, on

- a text classifier with directory outputs, a pickle model, dvclive-style metrics and the
  threshold declared only on the stage that evaluates the model;
- a model added with `dvc add` (no stage produces it);
- a model kept in git;
- two models in one repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from project import BIN
from shapes import build_churn, build_textclf_live, retrain_churn

OPS = ("--approver", "ops", "--reason", "test")


def promote(p, tag: str, env: str, model: str | None = None):
    extra = ("--model", model) if model else ()
    return p.ok("promote", tag, "--env", env, *OPS, "--push", *extra)


def lifecycle(p, tmp_path: Path, model: str, weights: str, retrain, *, model_opt: bool = False) -> dict:
    """Two releases, both promoted through staging to production, deployed, rolled back,
    deployed again, and restored by hand in a fresh clone. Returns the two releases' weights."""
    m = ("--model", model) if model_opt else ()
    rm = (model,) if model_opt else ()  # release names the model as its argument
    r1 = p.ok("release", *rm, "--push", "--json").json()
    assert r1["tag"] == f"{model}@v1.0.0", r1
    v1 = (p.root / weights).read_bytes()
    promote(p, r1["tag"], "staging", model if model_opt else None)
    promote(p, r1["tag"], "production", model if model_opt else None)

    retrain()
    r2 = p.ok("release", *rm, "--push", "--json").json()
    assert r2["tag"] == f"{model}@v1.1.0", r2  # new weights: a minor bump
    v2 = (p.root / weights).read_bytes()
    assert v1 != v2
    promote(p, r2["tag"], "staging", model if model_opt else None)
    out = promote(p, r2["tag"], "production", model if model_opt else None)
    assert "regression" in out.out

    target = tmp_path / "serving"
    res = p.ok("deploy", "--env", "production", "--target", str(target), *m, "--json")
    assert res.json()["release"] == r2["tag"]
    assert (target / "current" / weights).read_bytes() == v2
    p.ok("verify", "--target", str(target))

    p.ok("rollback", "--env", "production", *OPS, "--push", *m)
    res = p.ok("deploy", "--env", "production", "--target", str(target), *m, "--json")
    assert res.json()["release"] == r1["tag"]
    assert (target / "current" / weights).read_bytes() == v1
    p.ok("verify", "--target", str(target))

    # by hand, on a machine that has nothing: git checkout production && dvc pull
    fresh = tmp_path / "fresh"
    p.sh("git", "clone", "-q", str(p.origin), str(fresh), cwd=tmp_path)
    if p.store.exists():
        p.sh(os.path.join(BIN, "dvc"), "remote", "add", "--local", "-f", "-d", "local", str(p.store), cwd=fresh)
    branch = f"{model}/production" if model_opt else "production"
    p.sh("git", "checkout", "-q", branch, cwd=fresh)
    p.sh(os.path.join(BIN, "dvc"), "pull", "-q", cwd=fresh)
    assert (fresh / weights).read_bytes() == v1
    st = p.sh(os.path.join(BIN, "dvc"), "status", cwd=fresh)
    assert "changed" not in st.out and "deleted" not in st.out, st.out
    return {"v1": r1, "v2": r2}


def test_text_classifier_with_dir_outputs_pickle_and_dvclive_metrics(tmp_path):
    p = build_textclf_live(tmp_path / "p")
    show = p.ok("status", "--json")  # the workspace's model is found
    assert show.code == 0

    def retrain():
        params = p.root / "params.yaml"
        params.write_text(params.read_text().replace("alpha: 1.0", "alpha: 0.5"))
        p.dvc("repro", "-q")
        p.commit_all("alpha 0.5")

    rels = lifecycle(p, tmp_path, "textclf", "models/textclf/model.pkl", retrain)
    man = p.ok("show", rels["v1"]["tag"], "--json").json()
    man = man.get("manifest", man)
    comps = man["components"]
    # the threshold lives only on the evaluating stage; metrics come from the top-level `metrics:`
    assert comps["threshold"]["value"] == 0.5 and "evaluate.threshold" in comps["threshold"]["source"]
    assert man["metrics"]["accuracy"] > 0
    assert "src/textclf/evaluate.py" in {c["path"] for c in comps["code"]}  # every stage to evaluation
    weights = {w["path"]: w for w in comps["weights"]}
    assert weights["models/textclf"]["sha256"] and len(weights["models/textclf"]["sha256"]) == 64
    assert "eval/plots" not in {d["path"] for d in comps["data"]}  # a report, not data


def test_checkout_leaves_evaluation_outputs_alone(tmp_path):
    p = build_textclf_live(tmp_path / "p")
    first = p.ok("release", "--push", "--json").json()["tag"]
    params = p.root / "params.yaml"
    params.write_text(params.read_text().replace("alpha: 1.0", "alpha: 0.5"))
    p.dvc("repro", "-q")
    p.commit_all("alpha 0.5")
    p.ok("release", "--push")
    plots = (p.root / "eval/plots/scores.csv").read_bytes()
    p.ok("checkout", first)
    assert (p.root / "eval/plots/scores.csv").read_bytes() == plots  # not checkout's to touch
    p.ok("checkout", "textclf@latest")  # and the next checkout is not refused because of it
    assert (p.root / "eval/plots/scores.csv").read_bytes() == plots
    # work in the way is still refused: a modified file of the tuple
    pkl = p.root / "models/textclf/model.pkl"
    pkl.chmod(0o644)
    pkl.write_bytes(b"edited by hand")
    res = p.tether("checkout", first)
    assert res.code == 4 and "models/textclf" in res.err, res.err
    assert pkl.read_bytes() == b"edited by hand"


@pytest.mark.parametrize("keep", ["dvc", "git"])
def test_a_model_without_a_stage(tmp_path, keep):
    p = build_churn(tmp_path / "p", keep)
    rels = lifecycle(p, tmp_path, "churn", "models/churn.pkl", lambda: retrain_churn(p, 2, keep))
    man = p.ok("show", rels["v2"]["tag"], "--json").json()
    man = man.get("manifest", man)
    (w,) = man["components"]["weights"]
    assert w["path"] == "models/churn.pkl"
    if keep == "git":
        assert w["git_id"] and not man["components"]["weights"][0].get("sha256")
    else:
        assert w["md5"] and w["sha256"] and not w.get("git_id")
    assert man["components"]["threshold"]["value"] == 0.5
    assert {d["path"] for d in man["components"]["data"]} == {"data/holdout.csv"}


def test_a_bare_model_names_every_missing_part(tmp_path):
    p = build_churn(tmp_path / "p", "dvc", evaluate=False)
    res = p.tether("release")
    assert res.code == 5, res.err
    for part in ("data", "code", "params", "threshold"):
        assert f"{part}:" in res.err, res.err
    assert "meta: {tether: {threshold:" in res.err or "threshold:" in res.err
    assert "weights" not in res.err.split("refused")[1].split("hint")[0]  # the weights are fine
    assert not p.git("tag")


def test_two_models_in_one_repository(tmp_path):
    p = build_churn(tmp_path / "p", "dvc", second=True)
    lifecycle(p, tmp_path, "churn", "models/churn.pkl", lambda: retrain_churn(p, 2, "dvc"), model_opt=True)
    # the other model has its own releases and environments, untouched by churn's
    lite = p.ok("release", "churn-lite", "--push", "--json").json()
    assert lite["tag"] == "churn-lite@v1.0.0"
    assert {e["path"] for e in lite["manifest"]["components"]["code"]} == {"src/churn/evaluate.py"}
    assert lite["manifest"]["components"]["threshold"]["value"] == 0.4
    promote(p, lite["tag"], "staging", "churn-lite")
    st = p.ok("status", "--json").json()
    text = json.dumps(st)
    assert "churn-lite@v1.0.0" in text and "churn@v1.0.0" in text


def test_a_threshold_pointer_wins_and_a_broken_one_is_named(tmp_path):
    p = build_churn(tmp_path / "p", "dvc")
    (p.root / "policy").mkdir()
    (p.root / "policy/decision.json").write_text('{"decision": {"threshold": 0.62}}\n')
    y = p.root / "dvc.yaml"
    y.write_text(y.read_text().replace("        smoke: false\n",
                                       "        smoke: false\n        threshold: policy/decision.json:decision.threshold\n"))
    p.commit_all("threshold from the policy file")
    plan = p.ok("release", "--push", "--dry-run", "--json").json()
    assert plan["manifest"]["components"]["threshold"] == {
        "value": 0.62, "source": "policy/decision.json:decision.threshold", "params": []}

    y.write_text(y.read_text().replace("decision.threshold", "decision.cutoff"))
    p.commit_all("a pointer to nothing")
    res = p.tether("release")
    assert res.code == 5 and "meta.tether.threshold points to policy/decision.json:decision.cutoff" in res.err, res.err


def test_the_regression_gate_never_says_ok_without_metrics():
    from tether.core import gates

    g = gates.regression({}, {}, 0.05, ())
    assert g.ok and g.warning and g.status == "warn" and "could not compare" in g.message
    assert "metrics:" in g.hint
    g = gates.regression({"accuracy": 0.9}, {"loss": 0.1}, 0.05, ())
    assert g.status == "warn" and "share no numeric metric" in g.message
    g = gates.regression({"accuracy": 0.9}, {"accuracy": 0.91}, 0.05, ())
    assert g.status == "ok" and "accuracy" in g.message
    g = gates.regression({"accuracy": 0.9}, {"accuracy": 0.5}, 0.05, ())
    assert g.status == "FAIL"


def test_a_model_named_as_gto_allows_is_a_visible_release(tmp_path):
    """`my_model` (GTO and DVC allow `_` and upper case) once got a tag the registry then
    dropped: an invisible release. Now it is released, listed, shown and promoted; a name the
    tag grammar cannot carry is refused before anything is written."""
    p = build_churn(tmp_path / "p", "dvc")
    dvc_yaml = p.root / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("  churn:\n", "  My_churn_model:\n"))
    p.commit_all("rename the model")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    assert tag == "My_churn_model@v1.0.0"
    assert [r["tag"] for r in p.ok("list", "--json").json()] == [tag]
    assert p.ok("show", tag, "--json").json()["model"] == "My_churn_model"
    promote(p, tag, "staging", None)
    assert p.ok("status", "--json").json()[0]["environments"]["staging"] == tag

    dvc_yaml.write_text(dvc_yaml.read_text().replace("  My_churn_model:\n", "  _churn:\n"))
    p.commit_all("a name GTO refuses")
    before = p.git("tag")
    res = p.tether("release")
    assert res.code == 2 and "not a valid model name" in res.err, res.err
    assert p.git("tag") == before


@pytest.mark.parametrize("setting,named", [
    ("environments: prod", "environments"),  # once four environments p, r, o, d
    ("tolerance: five", "tolerance"),  # once a bare ValueError, exit 1
    ("tolerence: 0.1", "tolerence"),  # a misspelt key, once ignored
    ("smoke: 'no'", "smoke"),
    ("keep: -1", "keep"),
])
def test_a_bad_setting_is_a_usage_error_naming_the_key(tmp_path, setting, named):
    p = build_churn(tmp_path / "p", "dvc")
    dvc_yaml = p.root / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("        smoke: false\n", f"        {setting}\n", 1))
    p.commit_all("a bad setting")
    for args in (["release"], ["status"], ["promote", "churn@v1.0.0", "--env", "staging", *OPS]):
        res = p.tether(*args)
        assert res.code == 2 and f"meta.tether.{named}" in res.err, (args, res.code, res.err)
        assert "Traceback" not in res.err
    if named == "tolerence":
        assert "did you mean tolerance" in p.tether("status").err
    assert not p.git("tag")


def test_a_bad_setting_in_an_old_commit_is_one_finding_not_a_broken_registry(tmp_path):
    p = build_churn(tmp_path / "p", "dvc")
    good = (p.root / "dvc.yaml").read_text()
    p.ok("release", "--push")
    (p.root / "dvc.yaml").write_text(good.replace("        smoke: false\n", "        environments: prod\n", 1))
    p.commit_all("a bad setting")
    p.git("tag", "-a", "churn@v1.1.0", "-m", "tagged by hand")
    (p.root / "dvc.yaml").write_text(good)
    p.commit_all("fixed")
    rows = {r["tag"]: r for r in p.ok("list", "--json").json()}
    assert rows["churn@v1.0.0"]["complete"] and rows["churn@v1.1.0"]["kind"] == "unusable", rows
    assert "meta.tether.environments" in rows["churn@v1.1.0"]["problem"]
    res = p.tether("check", "--offline")
    assert res.code == 6 and "churn@v1.1.0" in res.err + res.out
