"""The adversarial suite: kill -9 mid-promotion and mid-checkout, tampering on a serving host,
and a corpus of bad inputs that must each get a clear error, the documented exit code, no
traceback and no change."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from project import promote_to, threshold_release

STRESS = int(os.environ.get("TETHER_STRESS", "0"))


def _kill_after(p, args, delay):
    proc = subprocess.Popen([sys.executable, "-m", "tether.cli", *args], cwd=p.root, env=p.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_kill_9_during_promotion_leaves_the_old_or_the_new_head(project):
    v2 = project.release_code_change("v2")
    promote_to(project, "fraud-detector@v1.0.0", "staging")
    old = project.git("rev-parse", "staging")
    rng = random.Random(7)
    for _ in range(STRESS or 3):
        before = project.git("rev-parse", "staging")
        target = v2 if before == old else "fraud-detector@v1.0.0"
        _kill_after(project, ["promote", target, "--env", "staging", "--approver", "k", "--reason", "kill"],
                    rng.uniform(0.3, 6.0))
        after = project.git("rev-parse", "staging")
        assert after == before or project.git("rev-parse", f"{after}^1") == before
        assert project.git("rev-parse", "staging^{tree}") == project.git("rev-parse", f"{project.ok('show', 'staging', '--json').json()['commit']}^{{tree}}")
        assert project.tether("history", "--env", "staging").code == 0


def test_kill_9_during_checkout_is_repaired_by_the_next_checkout(project):
    """A kill -9 cannot run our restore; what it must never do is leave a state that looks
    complete. The workspace is either untouched, or `tether checkout` says it is not clean."""
    threshold_release(project, 0.35)
    rng = random.Random(11)
    for _ in range(STRESS or 2):
        before = project.snapshot()
        _kill_after(project, ["checkout", "fraud-detector@v1.0.0"], rng.uniform(0.5, 4.0))
        after = project.snapshot()
        if after != before:
            # a half-done checkout is visible to git or DVC, never silent
            dirty = project.git("status", "--porcelain") or project.dvc("status", check=False).out
            assert dirty.strip() and "up to date" not in dirty.split("\n")[0] or after["head"] != before["head"]
        res = project.tether("checkout", "fraud-detector@v1.0.0", "--force")
        assert res.code == 0, res.err  # also repairs a DVC rwlock file the kill left half-written
        assert project.dvc("status").out.strip().startswith("Data and pipelines are up to date")
        project.git("checkout", "-q", "-f", "main")
        project.dvc("checkout", "-q", "--force")


def test_a_half_written_dvc_rwlock_is_repaired(project):
    """What a kill -9 in the middle of DVC's lock-file rewrite leaves behind."""
    threshold_release(project, 0.35)
    rwlock = project.root / ".dvc/tmp/rwlock"
    rwlock.parent.mkdir(exist_ok=True)
    rwlock.write_text("")
    assert project.dvc("status", check=False).code != 0  # plain DVC is stuck until someone deletes it
    res = project.tether("checkout", "fraud-detector@v1.0.0")
    assert res.code == 0, res.err
    assert project.dvc("status").out.strip().startswith("Data and pipelines are up to date")


def test_a_modified_file_on_the_serving_host_is_detected(project_live, tmp_path):
    project = project_live  # promote_to(project, "fraud-detector@v1.0.0"), shared
    target = tmp_path / "serving"
    assert project.tether("deploy", "--env", "production", "--target", str(target)).code == 0
    model = target / "current/models/fraud-detector/model.skops"
    model.chmod(0o644)
    with open(model, "r+b") as fh:
        fh.seek(50)
        fh.write(b"\0\0\0\0")
    res = project.tether("verify", "--target", str(target))
    assert res.code == 6 and "model.skops" in res.err


def test_a_shallow_clone_is_refused_for_environment_moves(project, tmp_path):
    shallow = tmp_path / "shallow"
    project.git("clone", "-q", "--depth", "1", f"file://{project.origin}", str(shallow), cwd=tmp_path)
    res = project.tether("promote", "fraud-detector@v1.0.0", "--env", "staging", "--approver", "a", "--reason", "r",
                         cwd=shallow)
    assert res.code == 2 and "shallow" in res.err and "Traceback" not in res.err


def test_a_repository_without_dvc(project, tmp_path):
    repo = tmp_path / "plain"
    repo.mkdir()
    project.git("init", "-q", cwd=repo)
    (repo / "x.txt").write_text("x")
    project.git("add", "x.txt", cwd=repo)
    project.git("commit", "-q", "-m", "x", cwd=repo)
    for args in (["list"], ["release"], ["status"]):
        res = project.tether(*args, cwd=repo)
        assert res.code == 2 and "dvc.yaml" in res.err and "Traceback" not in res.err, (args, res.err)


def test_a_detached_head_is_refused_by_release_but_read_commands_work(project):
    project.git("checkout", "-q", "--detach")
    assert project.tether("release", "--version", "9.0.0").code == 2
    assert project.tether("list").code == 0


def test_concurrent_promotions_from_two_clones_one_winner_per_round(project):
    v2 = project.release_code_change("v2")
    other = project.base / "other"
    project.git("clone", "-q", str(project.origin), str(other), cwd=project.base)
    shutil.copytree(project.root / ".dvc/cache", other / ".dvc/cache")
    shutil.copy(project.root / ".dvc/config.local", other / ".dvc/config.local")
    promote_to(project, "fraud-detector@v1.0.0", "staging")
    project.git("push", "-q", "origin", "staging")
    rounds = int(os.environ.get("TETHER_RACE_ROUNDS", "2"))
    for r in range(rounds):
        for clone in (project.root, other):
            project.git("fetch", "-q", "origin", "+staging:refs/remotes/origin/staging", cwd=clone)
            project.git("update-ref", "refs/heads/staging", "refs/remotes/origin/staging", cwd=clone)
        live = project.ok("show", "staging", "--json").json()["version"]
        target = v2 if live == "1.0.0" else "fraud-detector@v1.0.0"
        remote_before = project.git("rev-parse", "staging", cwd=project.origin)
        procs = [subprocess.Popen([sys.executable, "-m", "tether.cli", "promote", target, "--env", "staging",
                                   "--approver", f"clone{i}", "--reason", f"round {r}", "--push"], cwd=cwd,
                                  env=project.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i, cwd in enumerate((project.root, other))]
        codes = sorted(p.wait() for p in procs)
        assert codes == [0, 4], codes
        remote_after = project.git("rev-parse", "staging", cwd=project.origin)
        assert project.git("rev-parse", f"{remote_after}^1", cwd=project.origin) == remote_before  # one move, appended
    log = project.git("log", "--first-parent", "--format=%(trailers:key=Tether-Reason,valueonly)", "staging",
                      cwd=project.origin).split("\n")
    assert [line for line in log if line.startswith("round")] == [f"round {r}" for r in reversed(range(rounds))]


@pytest.mark.parametrize(
    "args,code",
    [
        (["show", "fraud-detector@v1.0"], 2),
        (["show", "fraud-detector@vX"], 2),
        (["show", "@v1.0.0"], 2),
        (["show", "ghost@v1.0.0"], 3),
        (["diff", "fraud-detector@v1.0.0", "prod"], 3),
        (["verify"], 2),
        (["verify", "fraud-detector@v1.0.0", "--target", "/tmp"], 2),
        (["verify", "--target", "/nonexistent/dir"], 3),
        (["deploy", "--env", "production", "--target", "/tmp/x", "--keep", "0"], 2),
        (["deploy", "--env", "qa", "--target", "/tmp/x"], 3),
        (["checkout", "fraud-detector@v3.0.0"], 3),
        (["history", "--env", "nope"], 3),
        (["rollback", "--env", "staging", "--approver", "a", "--reason", "r", "--release", "fraud-detector@v0.0.1"], 3),
        (["release", "--version", "01.0.0"], 2),
        (["gc", "--keep", "-1"], 2),
    ],
)
def test_bad_input_corpus(project, args, code):
    before = (project.refs(), project.git("status", "--porcelain"))
    res = project.tether(*args)
    assert res.code == code, (args, res.code, res.err)
    assert "Traceback" not in res.err and res.err.strip()
    assert (project.refs(), project.git("status", "--porcelain")) == before


def test_dry_runs_of_deploy_and_checkout_change_nothing(project_live, tmp_path):
    project = project_live  # promote_to(project, "fraud-detector@v1.0.0"), shared
    target = tmp_path / "serving"
    before = project.snapshot()
    res = project.tether("deploy", "--env", "production", "--target", str(target), "--dry-run", "--json")
    assert res.code == 0 and res.json()["outcome"] == "would-deploy", res.err
    assert not target.exists()
    res = project.tether("checkout", "production", "--dry-run", "--json")
    assert res.code == 0 and res.json()["release"] == "fraud-detector@v1.0.0"
    assert project.snapshot() == before
