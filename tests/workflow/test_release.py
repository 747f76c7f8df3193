"""`tether release` and the read commands, on a real git + DVC repository."""

import shutil

import pytest


def refused(project, res, code, *words):
    assert res.code == code, f"expected exit {code}, got {res.code}:\n{res.out}\n{res.err}"
    assert "Traceback" not in res.err
    for w in words:
        assert w in res.err, f"{w!r} not in:\n{res.err}"


def test_release_gate_dirty_tree(project):
    before = project.refs()
    (project.root / "notes.txt").write_text("wip")
    res = project.tether("release")
    refused(project, res, 4, "clean-tree", "notes.txt")
    assert project.refs() == before


def test_release_gate_dvc_status(project):
    project.code_only_change("touch")
    # an output edited by hand after the pipeline ran
    model = project.root / "models/fraud-detector/threshold.json"
    model.chmod(0o644)
    model.write_text('{"value": 0.9, "source": "by hand"}\n')
    before = project.refs()
    res = project.tether("release")
    refused(project, res, 5, "dvc-status", "dvc repro")
    assert project.refs() == before


def test_release_gate_params_disagree_with_conf(project):
    params = project.root / "params.yaml"
    params.write_text(params.read_text().replace("seed: 7", "seed: 8"))
    project.dvc("commit", "-f", "-q", "compose")  # accept the hand edit as compose's output
    project.dvc("repro", "-q")  # the pipeline ran on params.yaml, but conf/ still says 7
    project.commit_all("hand-edited params.yaml")
    assert project.dvc("status").out.strip().startswith("Data and pipelines are up to date")
    before = project.refs()
    res = project.tether("release")
    refused(project, res, 5, "params-conf", "seed=8", "conf/config.yaml: key seed", "tether conf apply")
    assert project.refs() == before


def _drop_dep(project, stage, dep):
    dvc_yaml = project.root / "dvc.yaml"
    text = dvc_yaml.read_text()
    start = text.index(f"  {stage}:")
    end = text.index("    outs:", start)
    block = text[start:end]
    line = f"      - {dep}\n"
    assert line in block
    dvc_yaml.write_text(text[:start] + block.replace(line, "") + text[end:])
    project.dvc("commit", "-f", "-q")
    project.commit_all(f"drop {dep} from {stage}")


def test_release_gate_undeclared_preprocessing_code(project):
    _drop_dep(project, "train", "src/fraud_detector/preprocess.py")
    before = project.refs()
    res = project.tether("release")
    refused(project, res, 5, "code", "src/fraud_detector/preprocess.py", "train")
    assert project.refs() == before


def test_release_gate_undeclared_data(project):
    _drop_dep(project, "train", "data/split/train.parquet")
    before = project.refs()
    res = project.tether("release")
    refused(project, res, 5, "data", "train")
    assert project.refs() == before


def test_release_gate_outputs_missing_on_remote(project):
    project.code_only_change("new code")
    shutil.rmtree(project.store)
    project.store.mkdir()
    before = project.refs()
    res = project.tether("release")
    refused(project, res, 7, "not on the DVC remote", "model.skops")
    assert project.refs() == before


def test_release_gate_tag_exists(project):
    project.code_only_change("new code")
    before = project.refs()
    res = project.tether("release", "--version", "1.0.0")
    refused(project, res, 4, "already exists")
    assert project.refs() == before


def test_release_refuses_a_detached_head_and_bad_versions(project):
    project.code_only_change("new code")
    refused(project, project.tether("release", "--version", "1.2"), 2, "semantic version")
    refused(project, project.tether("release", "--bump", "huge"), 2, "bump")
    refused(project, project.tether("release", "--bump", "patch", "--version", "2.0.0"), 2)
    project.git("checkout", "-q", "--detach")
    refused(project, project.tether("release"), 2, "detached")


def test_dry_run_proposes_and_changes_nothing(project):
    project.code_only_change("only code")
    before = project.refs()
    res = project.ok("release", "--dry-run", "--json")
    plan = res.json()
    assert plan["dry_run"] and plan["tag"] == "fraud-detector@v1.0.1" and plan["bump"] == "patch"
    assert plan["reasons"] == ["code changed"]
    assert project.refs() == before


def test_conf_change_retrains_and_proposes_minor(project):
    conf = project.root / "conf/model/random_forest.yaml"
    conf.write_text(conf.read_text().replace("n_estimators: 80", "n_estimators: 40"))
    old_lock = (project.root / "dvc.lock").read_text()
    project.dvc("repro", "-q")  # plain repro: the compose stage sees conf/ changed
    new_lock = (project.root / "dvc.lock").read_text()
    model_md5 = lambda lock: lock[lock.index("models/fraud-detector/model.skops", lock.index("  train:")):][:120]
    assert model_md5(old_lock) != model_md5(new_lock), "editing conf/ must retrain"
    project.commit_all("fewer trees")
    res = project.ok("release", "--push", "--json").json()
    assert res["tag"] == "fraud-detector@v1.1.0" and res["bump"] == "minor"
    assert any("params" in r for r in res["reasons"])


def test_push_sends_dvc_objects_before_the_tag(project):
    tag = project.release_code_change("pushed")
    remote_tags = project.git("ls-remote", "--tags", str(project.origin))
    assert f"refs/tags/{tag}" in remote_tags
    check = project.tether("check", "--json")
    assert check.code == 0, check.err
    assert check.json()["ok"]


def test_push_rejected_by_the_git_remote_leaves_no_local_tag(project):
    project.code_only_change("racing")
    # someone else already pushed a different v1.0.1 to origin
    other = project.base / "other"
    project.git("clone", "-q", str(project.origin), str(other), cwd=project.base)
    project.git("tag", "-a", "fraud-detector@v1.0.1", "-m", "theirs", cwd=other)
    project.git("push", "-q", "origin", "fraud-detector@v1.0.1", cwd=other)
    res = project.tether("release", "--push")
    refused(project, res, 4, "rejected")
    assert "fraud-detector@v1.0.1" not in project.tags()


def test_show_list_diff_status(project):
    v2 = project.release_code_change("second")
    shown = project.ok("show", "fraud-detector@latest", "--json").json()
    assert shown["version"] == "1.0.1" and shown["schema_version"] == 1
    comps = shown["components"]
    assert {c["path"] for c in comps["code"]} >= {"src/fraud_detector/train.py", "src/fraud_detector/preprocess.py"}
    assert {d["path"] for d in comps["data"]} == {"data/raw/transactions.parquet", "data/split/train.parquet",
                                                 "data/split/eval.parquet"}
    model = next(w for w in comps["weights"] if w["path"].endswith("model.skops"))
    assert len(model["sha256"]) == 64 and model["md5"] and model["size"] > 0
    assert comps["params"]["values"]["seed"] == 7
    assert comps["threshold"]["value"] == 0.3
    assert shown["metrics"]["predictions_sha256"] == shown["predictions_sha256"]
    assert [f["name"] for f in shown["feature_schema"]["features"]][:2] == ["amount", "hour"]
    assert shown["runtime"]["python"] and len(shown["runtime"]["lock_sha256"]) == 64

    rows = project.ok("list", "--json").json()
    assert [r["tag"] for r in rows] == [v2, "fraud-detector@v1.0.0"]

    d = project.ok("diff", "fraud-detector@v1.0.0", v2, "--json").json()
    assert d["components"]["code"]["modified"] == ["src/fraud_detector/bundle.py"]
    assert not d["components"]["weights"]["changed"] and not d["components"]["params"]["changed"]
    text = project.ok("diff", "fraud-detector@v1.0.0", v2).out
    assert "code       changed" in text and "M src/fraud_detector/bundle.py" in text

    status = project.ok("status", "--json").json()
    assert status[0]["latest"] == v2 and status[0]["workspace"]["matches"] == [v2]


def test_a_tag_made_by_hand_is_a_release_derived_from_its_commit(project):
    """`git tag` is a user's release verb: a hand-made tag (annotated or lightweight) on a commit
    with a complete pipeline is a release; the registry derives its manifest from the commit."""
    project.git("tag", "-a", "fraud-detector@v0.9.0", "-m", "made by hand")
    project.git("tag", "fraud-detector@v0.8.0")  # lightweight
    rows = {r["tag"]: r for r in project.ok("list", "--json").json()}
    for tag in ("fraud-detector@v0.9.0", "fraud-detector@v0.8.0"):
        assert rows[tag]["complete"] is True and rows[tag]["problem"] is None
        assert rows[tag]["metrics"] == rows["fraud-detector@v1.0.0"]["metrics"]
    project.ok("check")
    shown = project.ok("show", "fraud-detector@v0.9.0", "--json").json()
    assert shown["version"] == "0.9.0" and shown["components"]["threshold"]["value"] == 0.3


def test_check_detects_a_tag_recreated_on_another_commit(project):
    msg = project.git("tag", "-l", "--format=%(contents)", "fraud-detector@v1.0.0")
    project.code_only_change("moved")
    project.git("tag", "-f", "-a", "fraud-detector@v1.0.0", "-m", msg)  # same manifest, other commit
    res = project.tether("check", "--json")
    assert res.code == 6
    finding = res.json()["findings"][0]
    assert finding["kind"] == "mismatch" and "records commit" in finding["message"]


@pytest.mark.parametrize(
    "args,code",
    [
        (["show", "fraud-detector@v9.9.9"], 3),
        (["show", "nope@v1.0.0"], 3),
        (["show", "fraud-detector@1.0"], 2),
        (["show", "qa"], 3),
        (["show", "staging"], 3),  # nothing promoted yet
        (["diff", "fraud-detector@v1.0.0", "fraud-detector@v2.0.0"], 3),
        (["list", "Bad_Model"], 3),
        (["release", "nope"], 3),
    ],
)
def test_bad_input_to_read_commands(project, args, code):
    before = project.refs()
    res = project.tether(*args)
    assert res.code == code, (res.code, res.err)
    assert "error: " in res.err and "Traceback" not in res.err
    assert project.refs() == before


def test_outside_a_git_repository(project, tmp_path):
    res = project.tether("list", cwd=tmp_path)
    assert res.code == 2 and "not inside a git repository" in res.err


def test_the_ecosystem_reads_our_releases(project, tmp_path):
    """GTO lists our tags, and `dvc artifacts get` fetches the bundle of a release."""
    gto = shutil.which("gto", path=project.env()["PATH"])
    assert gto, "gto is installed with the test extras"
    shown = project.sh(gto, "show", "fraud-detector", "--json").out
    assert "v1.0.0" in shown
    # a consumer uses the DVC remote committed with the release
    project.dvc("remote", "add", "-f", "-d", "shared", str(project.store))
    tag = project.release_code_change("share the DVC remote")
    out = tmp_path / "bundle"
    dvc = shutil.which("dvc", path=project.env()["PATH"])
    project.sh(dvc, "artifacts", "get", str(project.origin), "fraud-detector", "--rev", tag.split("@")[1], "-o",
               str(out), cwd=tmp_path)
    from tether.runtime.bundle import verify_bundle

    verify_bundle(out)  # every file of the bundle, byte for byte
    m = project.ok("show", tag, "--json").json()
    model = next(w for w in m["components"]["weights"] if w["path"].endswith("model.skops"))
    from tether.digest import sha256_file

    assert sha256_file(out / "model.skops") == model["sha256"]
