"""Patch deploys link what another release directory already holds, tampering with a shared
file is caught in every release that shares it, and a rollback streamed from the remote (each
byte written once) survives kill -9 with the previous release serving."""

import os
import signal
import subprocess
import sys
import time

import pytest
from project import promote_to, threshold_release
from shapes import big_release, build_big, build_textclf

MODEL = "models/fraud-detector/model.skops"


def deploy(p, target, *extra):
    return p.tether("deploy", "--env", "production", "--target", str(target), *extra)


def verify(p, target):
    return p.tether("verify", "--target", str(target))


def serve_each(p, target, releases):
    """`tether verify --target` with `current` naming each release in turn: {release: result}."""
    from tether.servedir.layout import switch_current

    live = os.readlink(target / "current").split("/", 1)[1]
    out = {}
    for name in releases:
        switch_current(target, name)
        out[name] = verify(p, target)
    switch_current(target, live)
    return out


def tamper_in_place(path, keep_mtime=False):
    """What a person with write access to the host does: make the read-only file writable and
    change a byte where it lies, so every hard link to the inode sees it."""
    st = path.stat()
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(st.st_size // 2)
        b = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    path.chmod(0o444)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_patch_deploy_links_shared_weights_and_a_tamper_is_caught_in_every_release(project, tmp_path):
    p = project
    promote_to(p, "fraud-detector@v1.0.0")
    target = tmp_path / "serving"
    assert deploy(p, target).code == 0
    v1 = target / "releases/fraud-detector@v1.0.0"
    v2_tag = threshold_release(p, 0.35)
    promote_to(p, v2_tag)
    res = deploy(p, target, "--json")
    assert res.code == 0 and res.json()["outcome"] == "deployed", res.err
    v2 = target / f"releases/{v2_tag}"
    # the weights are the same inode: no new copy; what changed (the threshold) is a new file
    assert os.path.samefile(v1 / MODEL, v2 / MODEL)
    assert (v2 / MODEL).stat().st_nlink == 2
    changed = "models/fraud-detector/threshold.json"
    assert (v1 / changed).read_bytes() != (v2 / changed).read_bytes()
    assert not os.path.samefile(v1 / changed, v2 / changed)
    assert all(r.code == 0 for r in serve_each(p, target, [v1.name, v2.name]).values())

    # a tamper of the shared inode shows in both directories: verify refuses each of them
    tamper_in_place(v2 / MODEL)
    for name, r in serve_each(p, target, [v1.name, v2.name]).items():
        assert r.code == 6 and "model.skops" in r.err, (name, r.err)
    # deploy's own check (the stamp's size and mtime) fails too: the rollback target is built
    # again, copied from the cache, never linked from the tampered inode
    p.ok("rollback", "--env", "production", "--to", "fraud-detector@v1.0.0", "--approver", "a", "--reason", "t")
    res = deploy(p, target, "--json")
    assert res.code == 0 and res.json()["outcome"] == "deployed", res.err
    assert not os.path.samefile(v1 / MODEL, v2 / MODEL)
    assert verify(p, target).code == 0
    assert serve_each(p, target, [v2.name])[v2.name].code == 6


def test_dir_outputs_are_linked_file_by_file_and_a_tamper_keeping_mtime_is_caught(tmp_path):
    """A shape unlike the reference: every output a directory. A code-only release shares the
    whole model directory; a tamper that even restores the mtime is still caught by verify."""
    p = build_textclf(tmp_path / "p")
    tag1 = p.ok("release", "--push", "--json").json()["tag"]
    promote_to(p, tag1)
    target = tmp_path / "serving"
    assert deploy(p, target).code == 0, "first deploy"
    code = p.root / "src/textclf/evaluate.py"  # a code-only change: same data, params and outputs
    code.write_text(code.read_text() + "\n# scored the same way\n")
    p.dvc("repro", "-q")
    p.commit_all("evaluate: a comment")
    tag2 = p.ok("release", "--push", "--json").json()["tag"]
    promote_to(p, tag2)
    assert deploy(p, target).code == 0
    r1, r2 = target / "releases" / tag1, target / "releases" / tag2
    files = sorted(f.name for f in (r1 / "models/textclf").iterdir())
    assert files and all(os.path.samefile(r1 / "models/textclf" / f, r2 / "models/textclf" / f) for f in files)
    tamper_in_place(r2 / "models/textclf" / files[0], keep_mtime=True)
    for name, r in serve_each(p, target, [r1.name, r2.name]).items():
        assert r.code == 6 and "models/textclf" in r.err, (name, r.err)


@pytest.fixture
def big(tmp_path):
    """A 96 MiB raw-bytes model: v1 and v2 (new weights) deployed, v2 live; then production
    rolled back to v1, whose release directory and cache objects are gone: only the remote has it."""
    p = build_big(tmp_path / "big", 96)
    target = tmp_path / "serving"
    promote_to(p, "big@v1.0.0")
    assert deploy(p, target).code == 0
    v2 = big_release(p, 2, 96)
    promote_to(p, v2)
    assert deploy(p, target).code == 0
    p.ok("rollback", "--env", "production", "--to", "big@v1.0.0", "--approver", "a", "--reason", "kill test")
    import shutil

    shutil.rmtree(p.root / ".dvc/cache")
    shutil.rmtree(target / "releases/big@v1.0.0")
    return p, target, v2


def test_streaming_rollback_writes_each_byte_once_and_survives_kill_9(big):
    p, target, v2 = big
    staged = target / "releases/big@v1.0.0.partial/models/big/weights.bin.tether-tmp"
    for _round in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "tether.cli", "deploy", "--env", "production", "--target",
                                 str(target)], cwd=p.root, env=p.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (staged.exists() and staged.stat().st_size > 0) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert os.readlink(target / "current") == f"releases/{v2}"  # the previous release serves
        assert verify(p, target).code == 0
        cached = list((p.root / ".dvc/cache").rglob("*")) if (p.root / ".dvc/cache").exists() else []
        sizes = {f.stat().st_size for f in cached if f.is_file()}
        assert 96 << 20 not in sizes, "a half-streamed object never enters the cache"
    res = deploy(p, target, "--json")
    assert res.code == 0 and res.json()["outcome"] == "deployed", res.err
    assert os.readlink(target / "current") == "releases/big@v1.0.0" and verify(p, target).code == 0
    weights = target / "releases/big@v1.0.0/models/big/weights.bin"
    # written once: the cache object is the release's own file, linked, not a second copy
    assert weights.stat().st_nlink == 2
    assert not list(target.rglob("*.tether-tmp"))


def test_deploy_reads_origins_environment_and_tags_in_one_fetch_or_the_local_branch(tmp_path):
    """A `dvc add` model. Origin without the environment branch: the tags alone are fetched and
    the local branch deploys. Origin with it: its head wins over a lagging local branch, and a
    release tag only origin has comes in the same fetch."""
    from shapes import build_churn, retrain_churn

    p = build_churn(tmp_path / "churn")
    p.ok("release", "--push")
    p.ok("promote", "churn@v1.0.0", "--env", "production", "--approver", "a", "--reason", "r", "--skip-staging", "t")
    assert p.sh("git", "ls-remote", "origin", "refs/heads/production").out == ""  # not pushed
    target = tmp_path / "serving"
    res = deploy(p, target)
    assert res.code == 0, res.err
    assert os.readlink(target / "current") == "releases/churn@v1.0.0"

    old = p.git("rev-parse", "production")
    retrain_churn(p, 2)
    p.ok("release", "--push")
    p.ok("promote", "churn@v1.1.0", "--env", "production", "--approver", "a", "--reason", "r", "--push",
         "--skip-staging", "t", "--allow-regression", "t")
    p.git("branch", "-f", "production", old)  # the local branch lags behind origin's
    p.git("tag", "-d", "churn@v1.1.0")  # and only origin has the tag
    res = deploy(p, target)
    assert res.code == 0, res.err
    assert os.readlink(target / "current") == "releases/churn@v1.1.0"
    assert "churn@v1.1.0" in p.tags()
    assert verify(p, target).code == 0
