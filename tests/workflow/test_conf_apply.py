"""From `dvc exp run -S …` to a release: the params-vs-conf refusal names the Hydra overrides and
the file under conf/ each one changes, and `tether conf apply` writes them there.

The first tests compose real Hydra configs (a copy of the reference conf/, and small trees of
their own) with `hydra.compose`, as `dvc exp run -S` does; the last ones run the whole flow on a
real git + DVC repository."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from project import REPO_ROOT
from tether.core import confedit, confplan, confvalues
from tether.adapters import hydraconf


def conf_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "conf"
    shutil.copytree(REPO_ROOT / "conf", dst)
    return dst


def experiment(conf: Path, *overrides: str) -> dict:
    """params.yaml as `dvc exp run -S …` composes it: Hydra's compose with those overrides."""
    return hydraconf.compose(conf, overrides=list(overrides))


def apply(conf: Path, params: dict) -> dict[str, str]:
    """The edit plan for params, written into conf; returns {file: unified diff}."""
    exp = hydraconf.explain(conf, params)
    assert exp.expressible, exp.problems
    edits = confedit.edit_plan(exp.overrides, lambda f: (conf / f).read_text())
    for e in edits:
        (conf / e.file).write_text(e.after)
    return {e.file: e.diff() for e in edits}


def changed_lines(diff: str) -> list[str]:
    return [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


# -- explaining ---------------------------------------------------------------------------
def test_the_issues_experiment_is_three_overrides_each_with_its_file(tmp_path):
    conf = conf_copy(tmp_path)
    params = experiment(conf, "preprocess=robust", "evaluate.threshold=0.7", "data.window=2")
    exp = hydraconf.explain(conf, params)
    assert exp.expressible and not exp.problems
    got = {o.text: (o.kind, o.file, ".".join(o.path)) for o in exp.overrides}
    assert got == {
        "preprocess=robust": ("choice", "config.yaml", ""),
        "evaluate.threshold=0.7": ("change", "evaluate/fixed.yaml", "threshold"),
        "data.window=2": ("change", "data/fraud_stream.yaml", "window"),
    }


def test_group_choice_is_recognised_and_is_a_one_line_edit_of_the_defaults_list(tmp_path):
    conf = conf_copy(tmp_path)
    params = experiment(conf, "model=gradient_boosting")
    exp = hydraconf.explain(conf, params)
    assert [o.text for o in exp.overrides] == ["model=gradient_boosting"]  # not five key overrides
    diffs = apply(conf, params)
    assert list(diffs) == ["config.yaml"]
    assert changed_lines(diffs["config.yaml"]) == ["-  - model: random_forest", "+  - model: gradient_boosting"]
    assert confvalues.strict_equal(hydraconf.compose(conf), params)


def test_group_choice_then_a_key_inside_the_new_option(tmp_path):
    conf = conf_copy(tmp_path)
    params = experiment(conf, "preprocess=robust", "preprocess.clip_quantile=0.05")
    exp = hydraconf.explain(conf, params)
    assert [(o.text, o.file) for o in exp.overrides] == [
        ("preprocess=robust", "config.yaml"), ("preprocess.clip_quantile=0.05", "preprocess/robust.yaml")]
    diffs = apply(conf, params)
    # the comment on the edited line survives
    assert changed_lines(diffs["preprocess/robust.yaml"]) == ["-clip_quantile: 0.01", "+clip_quantile: 0.05"]
    assert (conf / "preprocess/standard.yaml").read_text() == (REPO_ROOT / "conf/preprocess/standard.yaml").read_text()
    assert confvalues.strict_equal(hydraconf.compose(conf), params)


def test_nested_key_goes_to_the_chosen_option_file_and_keeps_its_comment(tmp_path):
    conf = conf_copy(tmp_path)
    params = experiment(conf, "model.params.n_estimators=120", "data.window=3")
    diffs = apply(conf, params)
    assert sorted(diffs) == ["data/fraud_stream.yaml", "model/random_forest.yaml"]
    assert changed_lines(diffs["model/random_forest.yaml"]) == ["-  n_estimators: 80", "+  n_estimators: 120"]
    assert changed_lines(diffs["data/fraud_stream.yaml"])[1] == (
        "+window: 3          # which slice of the stream (weeks); fraud patterns drift between windows")
    assert confvalues.strict_equal(hydraconf.compose(conf), params)


def test_new_keys_are_plus_overrides_beside_their_siblings_or_in_config_yaml(tmp_path):
    conf = conf_copy(tmp_path)
    params = experiment(conf, "+evaluate.min_precision=0.2", "+train.epochs=3", "+model.params.warm_start=true")
    exp = hydraconf.explain(conf, params)
    assert {o.text: (o.kind, o.file, ".".join(o.path)) for o in exp.overrides} == {
        "+evaluate.min_precision=0.2": ("add", "evaluate/fixed.yaml", "min_precision"),
        "+train.epochs=3": ("add", "config.yaml", "train.epochs"),
        "+model.params.warm_start=true": ("add", "model/random_forest.yaml", "params.warm_start"),
    }
    diffs = apply(conf, params)
    assert changed_lines(diffs["model/random_forest.yaml"]) == ["+  warm_start: true"]
    assert changed_lines(diffs["config.yaml"]) == ["+train:", "+  epochs: 3"]
    assert confvalues.strict_equal(hydraconf.compose(conf), params)


def test_a_key_is_changed_where_hydra_takes_it_from_the_last_entry_that_sets_it(tmp_path):
    conf = conf_copy(tmp_path)
    cfg = conf / "config.yaml"
    cfg.write_text(cfg.read_text() + "evaluate:\n  threshold: 0.4  # team default, wins over the option\n")
    params = experiment(conf, "evaluate.threshold=0.6")
    exp = hydraconf.explain(conf, params)
    assert [(o.text, o.file, o.path) for o in exp.overrides] == [("evaluate.threshold=0.6", "config.yaml", ("evaluate", "threshold"))]
    diffs = apply(conf, params)
    assert changed_lines(diffs["config.yaml"]) == [
        "-  threshold: 0.4  # team default, wins over the option", "+  threshold: 0.6  # team default, wins over the option"]


def test_strings_that_look_like_numbers_and_types_are_kept_exactly(tmp_path):
    conf = conf_copy(tmp_path)
    params = experiment(conf, "data.name='0.5'", "data.window=2.0")
    exp = hydraconf.explain(conf, params)
    assert sorted(o.text for o in exp.overrides) == ["data.name='0.5'", "data.window=2.0"]
    diffs = apply(conf, params)
    assert changed_lines(diffs["data/fraud_stream.yaml"])[1] == "-window: 1          # which slice of the stream (weeks); fraud patterns drift between windows"
    assert "+name: '0.5'" in changed_lines(diffs["data/fraud_stream.yaml"])
    composed = hydraconf.compose(conf)
    assert composed["data"]["name"] == "0.5" and isinstance(composed["data"]["window"], float)
    assert confvalues.strict_equal(composed, params)


def test_a_removed_key_is_a_tilde_override_deleted_from_every_file_that_sets_it(tmp_path):
    conf = conf_copy(tmp_path)
    cfg = conf / "config.yaml"
    cfg.write_text(cfg.read_text() + "evaluate:\n  target_recall: 0.9  # stricter\n")
    params = experiment(conf, "~evaluate.target_recall")
    assert "target_recall" not in params["evaluate"]
    exp = hydraconf.explain(conf, params)
    assert [(o.text, o.file) for o in exp.overrides] == [
        ("~evaluate.target_recall", "evaluate/fixed.yaml"), ("~evaluate.target_recall", "config.yaml")]
    diffs = apply(conf, params)
    assert changed_lines(diffs["evaluate/fixed.yaml"]) == ["-target_recall: 0.8"]
    # the parent would be left empty: ruamel's round trip writes `evaluate: {}` instead
    assert "target_recall" not in (conf / "config.yaml").read_text()
    assert confvalues.strict_equal(hydraconf.compose(conf), params)


def test_differences_that_are_not_overrides_are_refused_with_the_reason(tmp_path):
    conf = conf_copy(tmp_path)
    params = experiment(conf, "evaluate.threshold=0.7")
    params["preprocess"] = "robust"        # a value where the group's mapping goes
    params["model"]["params"] = 5          # a mapping turned into a value
    del params["data"]                     # a whole group's package gone
    exp = hydraconf.explain(conf, params)
    assert not exp.expressible
    problems = " | ".join(exp.problems)
    assert "preprocess is a mapping in conf/ but the value 'robust' in params.yaml" in problems
    assert "(the group choice is `preprocess=…`)" in problems
    assert "model.params is a mapping in conf/ but the value 5" in problems
    assert "params.yaml has no data, the package of group data" in problems


def test_option_files_with_other_structure_and_group_defaults_in_option_files(tmp_path):
    """A nested group chosen inside an option file's own defaults list, and a file with comments,
    blank lines and a flow sequence the edit must not disturb."""
    conf = tmp_path / "conf"
    (conf / "model" / "optim").mkdir(parents=True)
    (conf / "config.yaml").write_text("defaults:\n  - model: net\n  - _self_\n\nseed: 1  # fixed\n")
    (conf / "model" / "net.yaml").write_text(textwrap.dedent("""\
        defaults:
          - optim: sgd   # the optimiser

        layers: [64, 32]
        dropout: 0.1
        """))
    (conf / "model" / "optim" / "sgd.yaml").write_text("name: sgd\nlr: 0.1\n")
    (conf / "model" / "optim" / "adam.yaml").write_text("name: adam\nlr: 0.001\nbetas: [0.9, 0.999]\n")
    params = experiment(conf, "model/optim=adam", "model.layers=[128,64,32]", "model.optim.lr=0.0005")
    exp = hydraconf.explain(conf, params)
    assert sorted((o.text, o.file) for o in exp.overrides) == [
        ("model.layers=[128,64,32]", "model/net.yaml"), ("model.optim.lr=0.0005", "model/optim/adam.yaml"),
        ("model/optim=adam", "model/net.yaml")]
    diffs = apply(conf, params)
    assert changed_lines(diffs["model/net.yaml"]) == [
        "-  - optim: sgd   # the optimiser", "+  - optim: adam   # the optimiser", "-layers: [64, 32]", "+layers: [128, 64, 32]"]
    assert confvalues.strict_equal(hydraconf.compose(conf), params)


@pytest.mark.parametrize("a, b, equal", [
    ({"x": 2}, {"x": 2.0}, False), ({"x": True}, {"x": 1}, False), ({"x": [1, 2]}, {"x": [1, 2]}, True),
    ({"x": {"y": None}}, {"x": {"y": None}}, True), ({"x": {}}, {"x": {"y": 1}}, False),
])
def test_strict_equality(a, b, equal):
    assert confvalues.strict_equal(a, b) is equal


# -- the flow on a real repository ----------------------------------------------------------
def params_of(project) -> dict:
    return yaml.safe_load((project.root / "params.yaml").read_text())


def test_from_dvc_exp_run_to_a_release_without_losing_the_experiment(project):
    project.dvc("exp", "run", "-S", "preprocess=robust", "-S", "evaluate.threshold=0.7", "-S", "data.window=2")
    exp_name = project.dvc("exp", "list", "--name-only").out.split()[0]
    project.dvc("exp", "apply", exp_name)
    project.commit_all("experiment: robust, window 2, threshold 0.7")
    wanted = params_of(project)
    params_bytes = (project.root / "params.yaml").read_bytes()

    # the release is refused, naming each override and the file it changes
    before = project.refs()
    res = project.tether("release")
    assert res.code == 5, res.err
    for line in ("preprocess=robust       conf/config.yaml: defaults list, preprocess: standard → robust",
                 "evaluate.threshold=0.7  conf/evaluate/fixed.yaml: key threshold",
                 "data.window=2           conf/data/fraud_stream.yaml: key window",
                 "tether conf apply"):
        assert line in res.err, res.err
    assert project.refs() == before

    # --dry-run shows the diff and writes nothing
    snap = project.snapshot()
    dry = project.ok("conf", "apply", "--dry-run")
    assert "+  - preprocess: robust" in dry.out and "+threshold: 0.7" in dry.out and "+window: 2 " in dry.out
    assert project.snapshot() == snap

    res = project.ok("conf", "apply")
    assert "nothing to re-run" in res.out
    # params.yaml is byte for byte the experiment's, conf/ composes to it exactly
    assert (project.root / "params.yaml").read_bytes() == params_bytes
    assert confvalues.strict_equal(hydraconf.compose(project.root / "conf"), wanted)
    changed = sorted(line.strip() for line in project.git("status", "--porcelain").splitlines())
    assert changed == ["M conf/config.yaml", "M conf/data/fraud_stream.yaml", "M conf/evaluate/fixed.yaml", "M dvc.lock"]
    # dvc.lock: only the compose stage's record of conf/ changed, so nothing wants to re-run
    lock_diff = changed_lines(project.git("diff", "-U0", "dvc.lock"))
    assert len(lock_diff) == 4 and all(("md5:" in ln or "size:" in ln) for ln in lock_diff), lock_diff
    assert project.dvc("status").out.strip() == "Data and pipelines are up to date."
    dry_repro = project.dvc("repro", "--dry").out
    assert "Running stage" not in dry_repro and "Stage 'train' didn't change, skipping" in dry_repro, dry_repro

    # a second apply has nothing to do
    assert "nothing to apply" in project.ok("conf", "apply").out

    project.commit_all("conf: the experiment's overrides")
    rel = project.ok("release", "--push", "--json").json()
    gates = {g["gate"]: g for g in rel["gates"]}
    assert gates["params-conf"]["ok"] and gates["params-conf"]["message"] == "params.yaml equals the composition of conf/"
    shown = project.ok("show", rel["tag"], "--json").json()
    assert shown["components"]["params"]["values"] == wanted
    # and a plain `dvc repro` later keeps the experiment: conf/ now says the same
    project.dvc("repro", "-q")
    assert params_of(project) == wanted


def test_a_new_key_from_dvc_exp_run_plus_is_written_and_released(project):
    project.dvc("exp", "run", "-S", "+evaluate.min_precision=0.2")
    project.commit_all("experiment: min_precision")
    assert params_of(project)["evaluate"]["min_precision"] == 0.2
    res = project.tether("release")
    assert res.code == 5 and "+evaluate.min_precision=0.2  conf/evaluate/fixed.yaml: new key min_precision" in res.err, res.err
    # from another directory, as `git -C`: DVC must commit this repository's compose stage
    project.ok("-C", str(project.root), "conf", "apply", cwd=project.base)
    assert (project.root / "conf/evaluate/fixed.yaml").read_text().endswith("target_recall: 0.8\nmin_precision: 0.2\n")
    assert project.dvc("status").out.strip() == "Data and pipelines are up to date."
    project.commit_all("conf: min_precision")
    # an evaluate key that moves neither the threshold nor the metrics proposes no bump by itself
    tag = project.ok("release", "--push", "--json", "--bump", "patch").json()["tag"]
    assert project.ok("show", tag, "--json").json()["components"]["params"]["values"]["evaluate"]["min_precision"] == 0.2


def test_a_difference_that_is_not_an_override_is_refused_and_nothing_is_written(project):
    params = project.root / "params.yaml"
    text = params.read_text()
    start, end = text.index("preprocess:\n"), text.index("seed: 7")
    # a hand edit that writes the group choice as if it were the value, and a seed override
    params.write_text(text[:start] + "preprocess: robust\n" + text[end:].replace("seed: 7", "seed: 8"))
    snap = project.snapshot()
    res = project.tether("conf", "apply")
    assert res.code == 5, res.err
    assert "preprocess is a mapping in conf/ but the value 'robust'" in res.err and "nothing written" in res.err
    assert "Traceback" not in res.err
    assert project.snapshot() == snap  # conf/, params.yaml and dvc.lock as they were
    res = project.tether("conf", "apply", "--dry-run", "--json")
    assert res.code == 5 and project.snapshot() == snap
    project.commit_all("hand-edited params.yaml")
    res = project.tether("release")
    assert res.code == 5 and "and it is not conf/ plus overrides: preprocess is a mapping" in res.err, res.err


def test_conf_apply_refuses_when_the_compose_stage_has_other_changes(project):
    params = project.root / "params.yaml"
    params.write_text(params.read_text().replace("seed: 7", "seed: 8"))
    code = project.root / "src/fraud_detector/compose.py"
    code.write_text(code.read_text() + "\n# changed\n")
    snap = project.snapshot()
    res = project.tether("conf", "apply")
    assert res.code == 4 and "src/fraud_detector/compose.py" in res.err, res.err
    assert project.snapshot() == snap


def test_conf_apply_with_nothing_to_apply_changes_nothing(project):
    snap = project.snapshot()
    res = project.ok("conf", "apply", "--json").json()
    assert res["agrees"] and res["written"] == []
    assert project.snapshot() == snap


def test_one_group_chosen_twice_under_two_packages_changes_only_the_right_entry(tmp_path):
    conf = conf_copy(tmp_path)
    cfg = conf / "config.yaml"
    cfg.write_text(cfg.read_text().replace("  - preprocess: standard\n",
                                           "  - preprocess@pre: standard\n  - preprocess@post: standard\n"))
    params = experiment(conf, "preprocess@post=robust")
    exp = hydraconf.explain(conf, params)
    assert [o.text for o in exp.overrides] == ["preprocess@post=robust"]
    diffs = apply(conf, params)
    assert changed_lines(diffs["config.yaml"]) == ["-  - preprocess@post: standard", "+  - preprocess@post: robust"]
    assert confvalues.strict_equal(hydraconf.compose(conf), params)


def test_an_interpolated_key_follows_its_source_and_keeps_its_interpolation(tmp_path):
    conf = conf_copy(tmp_path)
    fixed = conf / "evaluate/fixed.yaml"
    fixed.write_text(fixed.read_text() + "report_threshold: ${evaluate.threshold}  # same as the decision\n")
    params = experiment(conf, "evaluate.threshold=0.7")
    assert params["evaluate"]["report_threshold"] == 0.7
    exp = hydraconf.explain(conf, params)
    assert [o.text for o in exp.overrides] == ["evaluate.threshold=0.7"]
    apply(conf, params)
    assert "report_threshold: ${evaluate.threshold}  # same as the decision\n" in fixed.read_text()
    assert confvalues.strict_equal(hydraconf.compose(conf), params)


def test_groups_that_already_agree_are_not_searched(tmp_path):
    """Only the group whose subtree differs is composed option by option."""
    conf = conf_copy(tmp_path)
    params = experiment(conf, "preprocess=robust")
    calls = []
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base=None):
        s = hydraconf.Session(conf, "config")

        def compose(overrides):
            calls.append(list(overrides))
            return s.compose(overrides)

        exp = confplan.explain(params, compose, s.groups, s.entries, hydraconf.override_text)
    GlobalHydra.instance().clear()
    assert [o.text for o in exp.overrides] == ["preprocess=robust"]
    searched = {c[-1].split("=")[0] for c in calls if c}
    assert searched == {"preprocess"}, calls


def test_a_key_removed_with_dvc_exp_run_tilde_is_removed_from_conf_and_released(project):
    project.dvc("exp", "run", "-S", "~evaluate.target_recall", "-S", "evaluate.threshold=0.4")
    project.commit_all("experiment: no target_recall, threshold 0.4")
    wanted = params_of(project)
    assert "target_recall" not in wanted["evaluate"]
    res = project.tether("release")
    assert res.code == 5 and "~evaluate.target_recall  conf/evaluate/fixed.yaml: remove key target_recall" in res.err, res.err
    project.ok("conf", "apply")
    assert (project.root / "conf/evaluate/fixed.yaml").read_text() == (
        "strategy: fixed    # fixed | best_f1 | target_recall\nthreshold: 0.4\n")
    assert project.dvc("status").out.strip() == "Data and pipelines are up to date."
    project.commit_all("conf: no target_recall")
    tag = project.ok("release", "--push", "--json").json()["tag"]
    assert project.ok("show", tag, "--json").json()["components"]["params"]["values"] == wanted


def test_a_failing_dvc_commit_puts_conf_and_dvc_lock_back(project):
    """A real failure of DVC after conf/ was written (the compose stage's code vanished between
    the plan and the commit): every file is as it was before."""
    from tether.commands.conf_apply import execute_conf_apply, plan_conf_apply
    from tether.adapters.workspace import Workspace

    params = project.root / "params.yaml"
    params.write_text(params.read_text().replace("seed: 7", "seed: 8"))
    ws = Workspace.discover(project.root)
    plan = plan_conf_apply(ws)
    assert [o.text for o in plan.explanation.overrides] == ["seed=8"]
    snap = project.snapshot()
    code = project.root / "src/fraud_detector/compose.py"
    aside = project.base / "compose.py"
    code.rename(aside)
    with pytest.raises(Exception, match="compose.py"):
        execute_conf_apply(ws, plan)
    aside.rename(code)
    assert project.snapshot() == snap
