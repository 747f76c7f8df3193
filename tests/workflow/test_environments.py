"""Promotion, rollback and history: compare-and-swap moves of environment branches whose trees
are exactly a release's tree, with an append-only audit trail."""

import os
import sys

import pytest


def promote(project, ref, env, *extra, approver="alice", reason="looks good"):
    return project.tether("promote", ref, "--env", env, "--approver", approver, "--reason", reason, *extra)


def ok_promote(project, ref, env, *extra, **kw):
    res = promote(project, ref, env, *extra, **kw)
    assert res.code == 0, res.err
    return res


def head_log(project, branch):
    return project.git("log", "--first-parent", "--format=%H", branch).split()


def live(project, env):
    return project.ok("show", env, "--json").json()["version"]


def test_promotion_commit_is_the_release_tree_with_trailers(project):
    ok_promote(project, "fraud-detector@v1.0.0", "staging")
    tag_commit = project.git("rev-parse", "fraud-detector@v1.0.0^{commit}")
    tag_object = project.git("rev-parse", "fraud-detector@v1.0.0")
    assert project.git("rev-parse", "staging^{tree}") == project.git("rev-parse", f"{tag_commit}^{{tree}}")
    assert project.git("log", "-1", "--format=%P", "staging") == tag_commit
    trailers = project.git("log", "-1", "--format=%(trailers:only,unfold)", "staging")
    for line in ["Tether-Action: promote", "Tether-Release: fraud-detector@v1.0.0",
                 f"Tether-Tag-Object: {tag_object}", "Tether-Previous: none",
                 "Tether-Approver: alice", "Tether-Reason: looks good"]:
        assert line in trailers
    v2 = project.release_code_change("v2")
    ok_promote(project, v2, "staging", approver="bob", reason="patch")
    parents = project.git("log", "-1", "--format=%P", "staging").split()
    assert parents == [head_log(project, "staging")[1], project.git("rev-parse", f"{v2}^{{commit}}")]
    assert "Tether-Previous: fraud-detector@v1.0.0" in project.git("log", "-1", "--format=%B", "staging")


def test_production_requires_staging_first(project):
    before = project.refs()
    res = promote(project, "fraud-detector@v1.0.0", "production")
    assert res.code == 5 and "staging-first" in res.err and "never in staging" in res.err
    assert project.refs() == before
    ok_promote(project, "fraud-detector@v1.0.0", "production", "--skip-staging", "hotfix, approved by CTO")
    assert "Tether-Skip-Staging: hotfix, approved by CTO" in project.git("log", "-1", "--format=%B", "production")


def test_regression_gate_blocks_and_can_be_allowed_with_a_reason(project):
    ok_promote(project, "fraud-detector@v1.0.0", "staging")
    conf = project.root / "conf/evaluate/fixed.yaml"
    conf.write_text(conf.read_text().replace("threshold: 0.3", "threshold: 0.9"))  # recall collapses
    project.dvc("repro", "-q")
    project.commit_all("threshold 0.9")
    tag = project.ok("release", "--push", "--json").json()["tag"]
    assert tag == "fraud-detector@v1.0.1"  # a threshold-only change is a patch
    before = project.refs()
    res = promote(project, tag, "staging")
    assert res.code == 5 and "regression" in res.err and "recall" in res.err
    assert project.refs() == before
    ok_promote(project, tag, "staging", "--allow-regression", "precision matters more this quarter")
    assert "Tether-Allow-Regression: precision matters more this quarter" in project.git("log", "-1", "--format=%B", "staging")


def test_check_gate_refuses_a_release_missing_on_the_remote(project):
    import shutil

    shutil.rmtree(project.store)
    project.store.mkdir()
    before = project.refs()
    res = promote(project, "fraud-detector@v1.0.0", "staging")
    assert res.code == 7 and "not on the DVC remote" in res.err
    assert project.refs() == before


def test_smoke_gate_refuses_a_bundle_that_does_not_reproduce(project):
    # Corrupt the cached model AND the remote copy consistently: the check gate only compares md5
    # names, the smoke test loads and runs the bundle.
    import json

    manifest = project.ok("show", "fraud-detector@v1.0.0", "--json").json()
    metrics = next(w for w in manifest["components"]["weights"] if w["path"].endswith("metrics.json"))
    for root in (project.root / ".dvc/cache/files/md5", project.store / "files/md5"):
        p = root / metrics["md5"][:2] / metrics["md5"][2:]
        data = json.loads(p.read_text())
        data["predictions_sha256"] = "0" * 64
        p.chmod(0o644)
        p.write_text(json.dumps(data))
        p.chmod(0o444)  # DVC re-hashes writable cache files; a read-only one it trusts
    before = project.refs()
    res = promote(project, "fraud-detector@v1.0.0", "staging")
    assert res.code == 6, res.err
    assert project.refs() == before


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["promote", "fraud-detector@v1.0.0", "--env", "staging", "--approver", "a", "--reason", "  "], 2, "reason is empty"),
        (["promote", "fraud-detector@v1.0.0", "--env", "staging", "--approver", "", "--reason", "r"], 2, "approver is empty"),
        (["promote", "fraud-detector@v1.0.0", "--env", "qa", "--approver", "a", "--reason", "r"], 3, "unknown environment"),
        (["promote", "fraud-detector@v7.0.0", "--env", "staging", "--approver", "a", "--reason", "r"], 3, "no release"),
        (["promote", "fraud-detector@v1", "--env", "staging", "--approver", "a", "--reason", "r"], 2, "semantic version"),
        # no --approver: git's user.email approves (test_first_hour.py refuses when neither is set)
        (["rollback", "--env", "production", "--approver", "a", "--reason", "r"], 4, "nothing to roll back to"),
        (["rollback", "--env", "Prod!", "--approver", "a", "--reason", "r"], 2, "not a valid environment"),
        (["history", "--at", "last tuesday"], 2, "ISO-8601"),
    ],
)
def test_bad_input_changes_nothing(project, args, code, words):
    before = project.refs()
    res = project.tether(*args)
    assert res.code == code, (res.code, res.err)
    assert words in res.err and "Traceback" not in res.err
    assert project.refs() == before


def test_dry_run_moves_nothing(project):
    before = project.refs()
    res = project.ok("promote", "fraud-detector@v1.0.0", "--env", "staging", "--approver", "a", "--reason", "r",
                     "--dry-run", "--json")
    assert res.json()["dry_run"] and res.json()["release"] == "fraud-detector@v1.0.0"
    assert project.refs() == before


def test_rollback_chain_skips_releases_rolled_back_from(project):
    v1 = "fraud-detector@v1.0.0"
    v2 = project.release_code_change("v2")
    v3 = project.release_code_change("v3")
    for v in (v1, v2, v3):
        ok_promote(project, v, "production", "--skip-staging", "test")
    assert live(project, "production") == "1.0.2"
    project.ok("rollback", "--env", "production", "--approver", "carol", "--reason", "v3 misbehaves")
    assert live(project, "production") == "1.0.1"
    project.ok("rollback", "--env", "production", "--approver", "carol", "--reason", "v2 too")
    assert live(project, "production") == "1.0.0"
    res = project.tether("rollback", "--env", "production", "--approver", "carol", "--reason", "again")
    assert res.code == 4 and "nothing to roll back to" in res.err
    project.ok("rollback", "--env", "production", "--release", v3, "--approver", "dave", "--reason", "v3 fixed upstream")
    assert live(project, "production") == "1.0.2"
    events = project.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
    assert [(e["action"], e["release"]) for e in events] == [
        ("rollback", v3), ("rollback", v1), ("rollback", v2), ("promote", v3), ("promote", v2), ("promote", v1)]
    assert events[0]["approver"] == "dave" and events[0]["reason"] == "v3 fixed upstream"
    # append-only: every earlier head is an ancestor of the current one
    heads = head_log(project, "production")
    assert len(heads) >= 6
    for h in heads[1:6]:
        project.git("merge-base", "--is-ancestor", h, "production")
    stages = {r["tag"]: r["stage"] for r in project.ok("list", "--json").json()}
    assert stages == {v3: "production", v2: "archived", v1: "archived"}


def test_history_at_answers_which_release_was_live(project):
    v2 = project.release_code_change("v2")
    ok_promote(project, "fraud-detector@v1.0.0", "staging")
    t_between = project.ok("history", "--env", "staging", "--json").json()["environments"]["staging"]["events"][0]["time"]
    ok_promote(project, v2, "staging")
    events = project.ok("history", "--env", "staging", "--json").json()["environments"]["staging"]["events"]
    assert [e["release"] for e in events] == [v2, "fraud-detector@v1.0.0"]
    at = lambda t: project.ok("history", "--env", "staging", "--at", t, "--json").json()["environments"]["staging"]["live_at"]["release"]
    assert at(t_between) == "fraud-detector@v1.0.0"
    assert at(events[0]["time"]) == v2
    assert at("2000-01-01T00:00:00Z") is None


def test_a_moved_tag_is_an_integrity_error(project):
    ok_promote(project, "fraud-detector@v1.0.0", "staging")
    msg = project.git("tag", "-l", "--format=%(contents)", "fraud-detector@v1.0.0")
    project.git("tag", "-f", "-a", "fraud-detector@v1.0.0", "-m", msg, "fraud-detector@v1.0.0^{commit}")  # re-created
    for args in (["history"], ["check"], ["verify", "staging"]):
        res = project.tether(*args)
        assert res.code == 6, (args, res.code, res.err, res.out)
        assert "moved or re-created" in (res.err + res.out)
    before = project.refs()
    assert promote(project, "fraud-detector@v1.0.0", "production", "--skip-staging", "x").code == 6
    assert project.refs() == before


def test_push_race_between_two_clones_has_one_winner(project):
    """Two clones promote different releases to the same environment on one bare remote."""
    v2 = project.release_code_change("v2")
    ok_promote(project, "fraud-detector@v1.0.0", "staging", "--push")
    other = project.base / "other"
    project.git("clone", "-q", str(project.origin), str(other), cwd=project.base)
    project.git("remote", "set-url", "origin", str(project.origin), cwd=other)
    import shutil

    shutil.copytree(project.root / ".dvc/cache", other / ".dvc/cache")
    shutil.copy(project.root / ".dvc/config.local", other / ".dvc/config.local")
    project.git("fetch", "-q", "origin", "staging:staging", cwd=other)
    # Both start from the same staging head; whoever pushes second must lose.
    ok_promote(project, v2, "staging", "--push", approver="first")
    before_other = project.git("rev-parse", "staging", cwd=other)
    res = project.tether("promote", v2, "--env", "staging", "--approver", "second", "--reason", "r", "--push",
                         cwd=other)
    # the loser either sees the winner's move when it syncs (conflict: already runs), or is rejected
    assert res.code == 4, res.err
    remote_log = project.git("log", "--first-parent", "--format=%(trailers:key=Tether-Approver,valueonly)",
                             "staging", cwd=project.origin).split()
    assert remote_log.count("first") == 1 and "second" not in remote_log
    assert project.git("rev-parse", "staging", cwd=other) in (before_other, project.git("rev-parse", "staging"))


RACE = r"""
import subprocess, sys
procs = [subprocess.Popen([sys.executable, "-m", "tether.cli", "promote", ref, "--env", "staging",
                           "--approver", f"p{i}", "--reason", "race", "--push"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
         for i, ref in enumerate(sys.argv[1:])]
print(" ".join(str(p.wait()) for p in procs))
"""


def test_concurrent_promotions_in_one_clone_one_winner_per_round(project):
    v2 = project.release_code_change("v2")
    v3 = project.release_code_change("v3")
    rounds = int(os.environ.get("TETHER_RACE_ROUNDS", "3"))
    refs = ["fraud-detector@v1.0.0", v2, v3]
    winners = 0
    for r in range(rounds):
        before = project.git("rev-parse", "--verify", "-q", "staging") if r else None
        live_before = live(project, "staging") if r else None
        candidates = [x for x in refs if not live_before or not x.endswith(live_before)][:2]
        res = project.sh(sys.executable, "-c", RACE, *candidates)
        codes = [int(c) for c in res.out.split()]
        assert sorted(codes) == [0, 4], codes
        winners += 1
        local = project.git("rev-parse", "staging")
        assert local == project.git("rev-parse", "staging", cwd=project.origin)
        if before:
            project.git("merge-base", "--is-ancestor", before, local)
    events = project.ok("history", "--env", "staging", "--json").json()["environments"]["staging"]["events"]
    assert len(events) == winners == rounds


def test_plain_git_checkout_and_dvc_pull_restore_the_tuple(project, tmp_path):
    ok_promote(project, "fraud-detector@v1.0.0", "staging", "--push")
    ok_promote(project, "fraud-detector@v1.0.0", "production", "--push")
    manifest = project.ok("show", "production", "--json").json()
    fresh = tmp_path / "fresh"
    project.git("clone", "-q", str(project.origin), str(fresh), cwd=tmp_path)
    project.git("checkout", "-q", "production", cwd=fresh)
    project.sh(os.path.join(os.path.dirname(sys.executable), "dvc"), "remote", "add", "--local", "-f", "-d", "local",
               str(project.store), cwd=fresh)
    project.sh(os.path.join(os.path.dirname(sys.executable), "dvc"), "pull", "-q", cwd=fresh)
    from tether.digest import sha256_file

    for comp in ("weights", "data"):
        for e in manifest["components"][comp]:
            assert sha256_file(fresh / e["path"]) == e["sha256"], e["path"]
    for c in manifest["components"]["code"]:
        assert project.git("rev-parse", f"HEAD:{c['path']}", cwd=fresh) == c["git_id"]
    assert (fresh / "params.yaml").read_bytes() == (project.root / "params.yaml").read_bytes()


def test_gc_never_removes_what_a_release_in_any_history_needs(project):
    from project import cache_object, promote_to, threshold_release

    v2 = threshold_release(project, 0.35)
    v3 = threshold_release(project, 0.4)
    for tag in ("fraud-detector@v1.0.0", v2, v3):
        promote_to(project, tag)
    # an experiment that was never released leaves objects behind
    conf = project.root / "conf/evaluate/fixed.yaml"
    conf.write_text(conf.read_text().replace("threshold: 0.4", "threshold: 0.45"))
    project.dvc("repro", "-q")
    import yaml

    lock = yaml.safe_load((project.root / "dvc.lock").read_text())
    junk = next(o["md5"] for o in lock["stages"]["evaluate"]["outs"] if o["path"].endswith("threshold.json"))
    project.git("checkout", "-q", "--", "conf")
    project.dvc("repro", "-q")
    assert cache_object(project, junk).exists()
    res = project.ok("gc", "--keep", "1", "--cloud", "--prune-now", "--json").json()  # junk is minutes old
    assert set(res["protected_releases"]) == {"fraud-detector@v1.0.0", v2, v3}
    assert junk in res["cache_delete"]
    assert not cache_object(project, junk).exists()
    for tag in ("fraud-detector@v1.0.0", v2, v3):
        assert project.tether("verify", tag).code == 0, tag
    assert project.ok("check", "--json").json()["ok"]
