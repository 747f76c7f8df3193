"""`tether checkout`: all of the release in the workspace, or nothing changes."""

from project import cache_object, corrupt, promote_to, threshold_release


def _entries(p, tag):
    m = p.ok("show", tag, "--json").json()
    return m, m["components"]["weights"] + m["components"]["data"]


def test_checkout_moves_git_and_outputs_together(project):
    v2 = threshold_release(project, 0.35)
    res = project.ok("checkout", "fraud-detector@v1.0.0", "--json").json()
    assert res["release"] == "fraud-detector@v1.0.0"
    m, entries = _entries(project, "fraud-detector@v1.0.0")
    assert project.git("rev-parse", "HEAD") == m["commit"]
    from tether.digest import sha256_file

    for e in entries:
        assert sha256_file(project.root / e["path"]) == e["sha256"], e["path"]
    assert project.dvc("status").out.strip().startswith("Data and pipelines are up to date")
    promote_to(project, v2)
    project.ok("checkout", "production")
    # detached at production's head: a commit made now moves no environment (test_checkout_safety)
    assert project.git("rev-parse", "HEAD") == project.git("rev-parse", "production")
    assert project.sh("git", "symbolic-ref", "-q", "HEAD", check=False).code != 0
    assert "threshold: 0.35" in (project.root / "params.yaml").read_text() or "0.35" in (project.root / "models/fraud-detector/threshold.json").read_text()


def test_checkout_refuses_uncommitted_work_unless_forced(project):
    threshold_release(project, 0.35)
    (project.root / "conf/model/random_forest.yaml").write_text("name: random_forest\nparams: {}\n")
    before = project.snapshot()
    res = project.tether("checkout", "fraud-detector@v1.0.0")
    assert res.code == 4 and "uncommitted" in res.err
    assert project.snapshot() == before
    assert project.tether("checkout", "fraud-detector@v1.0.0", "--force").code == 0


def test_missing_object_leaves_the_workspace_byte_identical(project):
    v2 = threshold_release(project, 0.35)
    _, entries = _entries(project, "fraud-detector@v1.0.0")
    md5 = next(e["md5"] for e in entries if e["path"].endswith("threshold.json"))  # v1's, not v2's
    cache_object(project, md5).unlink()
    (project.store / "files/md5" / md5[:2] / md5[2:]).unlink()
    before = project.snapshot()
    res = project.tether("checkout", "fraud-detector@v1.0.0")
    assert res.code == 7 and "threshold.json" in res.err, res.err
    assert project.snapshot() == before
    assert v2


def test_corrupt_object_after_git_moved_restores_everything(project):
    """The hard case for plain git + dvc pull: git has moved, then an output fails. We roll back."""
    threshold_release(project, 0.35)
    _, entries = _entries(project, "fraud-detector@v1.0.0")
    md5 = next(e["md5"] for e in entries if e["path"].endswith("metrics.json"))
    corrupt(cache_object(project, md5))
    before = project.snapshot()
    res = project.tether("checkout", "fraud-detector@v1.0.0")
    assert res.code == 6 and "metrics.json" in res.err, res.err
    after = project.snapshot()
    assert after["head"] == before["head"] and after["branch"] == before["branch"]
    assert after["files"].keys() == before["files"].keys()
    changed = [k for k in before["files"] if before["files"][k] != after["files"][k]]
    assert changed == [], changed
