"""`tether checkout` never moves an environment and never loses an edit; a checkout that runs
out of space puts the tree back; a killed `tether conf apply` is finished by the next one.

Every test runs the real CLI on real git + DVC repositories (tests/helpers/project.py, tests/helpers/shapes.py)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project import Project, threshold_release
from shapes import big_release, build_big, build_churn, build_textclf, clone, retrain_churn


def _up_to_date(p: Project, cwd: Path | None = None) -> bool:
    out = p.sh(os.path.join(os.path.dirname(sys.executable), "dvc"), "status", cwd=cwd).out
    return out.strip().startswith("Data and pipelines are up to date")


def _attached(p: Project, cwd: Path | None = None) -> str:
    return p.sh("git", "symbolic-ref", "-q", "--short", "HEAD", cwd=cwd, check=False).out.strip()


# -- 1. checkout ENV detaches; a local branch is the way back ------------------------------
def test_a_commit_after_checkout_env_never_moves_the_environment(project_live):
    p = project_live
    threshold_release(p, 0.35)  # main moves on; production keeps v1.0.0
    main_threshold = (p.root / "models/fraud-detector/threshold.json").read_bytes()
    prod = p.git("rev-parse", "production")
    res = p.ok("checkout", "production")
    assert _attached(p) == "" and p.git("rev-parse", "HEAD") == prod
    assert "detached" in res.out and "tether checkout main" in res.out, res.out
    assert _up_to_date(p)
    (p.root / "notes.txt").write_text("a note\n")
    p.commit_all("a commit made after checking out production")
    assert p.git("rev-parse", "production") == prod  # the environment did not move
    mine = p.git("rev-parse", "HEAD")
    # leaving a commit that no branch holds would lose it: refused, nothing changes
    before = p.snapshot()
    res = p.tether("checkout", "main")
    assert res.code == 4 and mine[:12] in res.err and "git branch" in res.err, res.err
    assert p.snapshot() == before
    p.git("branch", "my-notes", mine)
    res = p.ok("checkout", "main", "--json").json()
    assert res["ref"] == "main" and _attached(p) == "main"
    assert (p.root / "models/fraud-detector/threshold.json").read_bytes() == main_threshold
    assert _up_to_date(p)
    assert p.git("rev-parse", "production") == prod


def test_a_teammate_checks_out_an_environment_from_a_fresh_clone_and_comes_back(project_live, tmp_path):
    p = project_live
    p.git("push", "-q", "origin", "main", "production")
    mate = clone(p, tmp_path / "mate")
    p.sh(os.path.join(os.path.dirname(sys.executable), "dvc"), "pull", "-q", cwd=mate)
    prod = p.git("rev-parse", "origin/production", cwd=mate)
    p.ok("checkout", "production", cwd=mate)
    assert _attached(p, mate) == "" and p.git("rev-parse", "HEAD", cwd=mate) == prod
    (mate / "notes.txt").write_text("a note\n")
    p.git("add", "notes.txt", cwd=mate)
    p.git("commit", "-q", "-m", "teammate's commit", cwd=mate)
    p.git("branch", "notes", cwd=mate)
    assert p.git("for-each-ref", "--format=%(refname)", "refs/heads/production", cwd=mate) == ""
    p.ok("checkout", "main", cwd=mate)
    assert _attached(p, mate) == "main" and _up_to_date(p, mate)
    assert p.git("rev-parse", "origin/production", cwd=mate) == prod == p.git("ls-remote", str(p.origin),
                                                                              "refs/heads/production").split()[0]


def test_two_models_an_environment_branch_is_never_checked_out_as_a_branch(tmp_path):
    """The churn shape (models added with `dvc add`), two models: the second model's environment
    lives on `churn-lite/production`; naming that branch is refused, the environment is detached."""
    p = build_churn(tmp_path / "c", "dvc", second=True)
    p.ok("release", "churn", "--push")
    p.ok("release", "churn-lite", "--push")
    for model in ("churn", "churn-lite"):
        p.ok("promote", f"{model}@v1.0.0", "--env", "production", "--model", model, "--approver", "ci",
             "--reason", "test", "--skip-staging", "test")
    assert p.git("rev-parse", "--verify", "-q", "refs/heads/churn-lite/production")
    retrain_churn(p, 2, "dvc")  # main moves on: new churn weights
    main_weights = (p.root / "models/churn.pkl").read_bytes()
    lite, prod = p.git("rev-parse", "churn-lite/production"), p.git("rev-parse", "churn/production")
    before = p.snapshot()
    res = p.tether("checkout", "churn-lite/production")
    assert res.code == 2 and "tether checkout production --model churn-lite" in res.err, res.err
    assert p.snapshot() == before
    res = p.ok("checkout", "production", "--model", "churn")
    assert "tether checkout main" in res.out, res.out
    assert _attached(p) == "" and p.git("rev-parse", "HEAD") == prod
    assert (p.root / "models/churn.pkl").read_bytes() != main_weights and _up_to_date(p)
    (p.root / "notes.txt").write_text("a note\n")
    p.commit_all("a commit on the detached production")
    p.git("branch", "notes")
    assert p.git("rev-parse", "churn/production") == prod
    p.ok("checkout", "main")
    assert _attached(p) == "main" and (p.root / "models/churn.pkl").read_bytes() == main_weights
    assert _up_to_date(p) and p.git("rev-parse", "churn-lite/production") == lite
    # the other model's environment: churn.pkl is left as it was (main's, kept in the cache), and
    # the way back is not refused for it
    p.ok("checkout", "production", "--model", "churn-lite")
    assert _attached(p) == "" and p.git("rev-parse", "HEAD") == lite
    p.ok("checkout", "main")
    assert _attached(p) == "main" and (p.root / "models/churn.pkl").read_bytes() == main_weights
    assert _up_to_date(p)


def test_an_unknown_name_is_still_a_clear_error_that_changes_nothing(project):
    before = project.snapshot()
    res = project.tether("checkout", "no-such-branch")
    assert res.code == 3 and "no-such-branch" in res.err and "Traceback" not in res.err, res.err
    assert "local branch" in res.err and "tether checkout main" in res.err, res.err  # the hint names every kind
    assert project.snapshot() == before


# -- 2. an edit that keeps size and mtime is still an edit ---------------------------------
def _rewrite_keeping_stat(path: Path) -> bytes:
    st = path.stat()
    mode = st.st_mode
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    path.chmod(mode & 0o777)
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    return bytes(data)


def test_an_edit_that_keeps_size_and_mtime_is_not_overwritten(project):
    threshold_release(project, 0.35)  # same weights, new threshold: checkout replaces every output
    weights = project.root / "models/fraud-detector/model.skops"
    edited = _rewrite_keeping_stat(weights)
    assert _up_to_date(project)  # DVC's stat shortcut calls it clean
    before = project.snapshot()
    res = project.tether("checkout", "fraud-detector@v1.0.0")
    assert res.code == 4 and "models/fraud-detector/model.skops" in res.err and "--force" in res.err, res.err
    assert project.snapshot() == before and weights.read_bytes() == edited
    assert project.tether("checkout", "fraud-detector@v1.0.0", "--force").code == 0  # said to discard


def test_a_teammates_pulled_weights_edited_in_place_are_not_overwritten(project, tmp_path):
    threshold_release(project, 0.35)
    mate = clone(project, tmp_path / "mate")
    dvc = os.path.join(os.path.dirname(sys.executable), "dvc")
    project.sh(dvc, "pull", "-q", cwd=mate)
    weights = mate / "models/fraud-detector/model.skops"
    edited = _rewrite_keeping_stat(weights)
    assert _up_to_date(project, mate)
    head = project.git("rev-parse", "HEAD", cwd=mate)
    res = project.tether("checkout", "fraud-detector@v1.0.0", cwd=mate)
    assert res.code == 4 and "model.skops" in res.err, res.err
    assert weights.read_bytes() == edited and project.git("rev-parse", "HEAD", cwd=mate) == head


def test_an_edit_inside_a_directory_output_is_not_overwritten(tmp_path):
    p = build_textclf(tmp_path / "t")
    p.ok("release", "--push")
    params = p.root / "params.yaml"
    params.write_text(params.read_text().replace("threshold: 0.5", "threshold: 0.6"))
    p.dvc("repro", "-q")
    p.commit_all("threshold 0.6")
    p.ok("release", "--push")
    target = p.root / "models/textclf/model.pkl"
    edited = _rewrite_keeping_stat(target)
    assert _up_to_date(p)
    before = p.snapshot()
    res = p.tether("checkout", "textclf@v1.0.0")
    assert res.code == 4 and "models/textclf" in res.err, res.err
    assert p.snapshot() == before and target.read_bytes() == edited


# -- 3. no space: exit 7, the tree as it was -----------------------------------------------
@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave: int) -> None:
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_checkout_without_space_exits_7_and_leaves_the_tree_as_it_was(small_fs):
    p = build_big(small_fs / "b", 4)
    v2 = big_release(p, 2, 4)
    assert v2 != "big@v1.0.0"
    _fill(small_fs, 1 << 20)  # 1 MiB left; v1's weights need 4
    before = p.snapshot()
    res = p.tether("checkout", "big@v1.0.0")
    assert res.code == 7 and str(p.root) in res.err and "MiB" in res.err and "Traceback" not in res.err, res.err
    assert p.snapshot() == before
    assert _up_to_date(p)
    (small_fs / "filler").unlink()
    assert p.tether("checkout", "big@v1.0.0").code == 0


def test_a_disk_that_fills_after_the_space_check_puts_everything_back(small_fs):
    """Exactly the room the outputs' bytes need and no more: the check passes, then the disk
    fills for real while git's files and the weights are written (each file takes whole pages)."""
    p = build_big(small_fs / "b", 4)
    big_release(p, 2, 4)
    need = sum(f.stat().st_size for f in (p.root / "models/big").iterdir())  # v1's outputs are as large
    _fill(small_fs, need + 4096)
    before = p.snapshot()
    res = p.tether("checkout", "big@v1.0.0")
    assert res.code == 7 and "models/big/" in res.err and str(p.root) in res.err, res.err
    assert "Traceback" not in res.err and "as it was" in res.err, res.err
    assert p.snapshot() == before
    assert _up_to_date(p)


def _limited(limit: int):
    def set_limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return set_limit


def test_a_write_that_fails_after_git_moved_puts_everything_back(tmp_path):
    """The space check passes, then a write fails for real (the file-size limit stands in for a
    disk another process filled meanwhile): git, dvc.lock and the weights are as before."""
    p = build_big(tmp_path / "b", 4)
    big_release(p, 2, 4)
    before = p.snapshot()
    proc = subprocess.run([sys.executable, "-m", "tether.cli", "checkout", "big@v1.0.0"], cwd=p.root,
                          env=p.env(), capture_output=True, text=True, preexec_fn=_limited(1 << 20))
    assert proc.returncode == 7 and "models/big/weights.bin" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert p.snapshot() == before
    assert _up_to_date(p)


# -- 4. a killed conf apply is finished by the next one ------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_conf_apply_killed_after_writing_conf_is_finished_by_a_rerun(project):
    params = project.root / "params.yaml"
    conf = project.root / "conf/evaluate/fixed.yaml"
    project.dvc("exp", "run", "-q", "-S", "evaluate.threshold=0.35")  # the template's run-cache has it
    assert _up_to_date(project)
    params_bytes = params.read_bytes()
    lock_before = (project.root / "dvc.lock").read_bytes()
    conf_before = conf.read_bytes()
    for _attempt in range(10):
        proc = subprocess.Popen([sys.executable, "-m", "tether.cli", "conf", "apply"], cwd=project.root,
                                env=project.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and conf.read_bytes() == conf_before:
            pass  # poll: kill the moment conf/ is written, before `dvc commit` records it
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if conf.read_bytes() != conf_before and (project.root / "dvc.lock").read_bytes() == lock_before:
            break
        conf.write_bytes(conf_before)  # the kill came too late: try again
        (project.root / "dvc.lock").write_bytes(lock_before)
        time.sleep(0)
    else:
        pytest.fail("never killed between writing conf/ and dvc commit")
    assert not _up_to_date(project)  # the compose stage's record is stale
    snap = project.snapshot()
    res = project.tether("conf", "apply", "--dry-run")
    assert res.code == 0 and "dvc commit compose" in res.out and "nothing written" in res.out, res.out + res.err
    assert project.snapshot() == snap
    res = project.tether("conf", "apply")
    assert res.code == 0 and "nothing to apply" not in res.out, res.out + res.err
    assert "dvc.lock" in res.out
    assert _up_to_date(project), project.dvc("status").out
    assert params.read_bytes() == params_bytes  # never recomposed (no key reordered)
    assert "threshold: 0.35" in conf.read_text()
    res = project.ok("conf", "apply")
    assert "nothing to apply" in res.out
