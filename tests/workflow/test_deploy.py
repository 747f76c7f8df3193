"""Atomic deploy and rollback on a serving directory, with faults injected at every step."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
from project import cache_object, corrupt, promote_to, threshold_release

STRESS = int(os.environ.get("TETHER_STRESS", "0"))


def deploy(p, target, *extra):
    return p.tether("deploy", "--env", "production", "--target", str(target), *extra)


def current(target):
    link = target / "current"
    return os.readlink(link) if link.is_symlink() else None


def assert_serving_verified(p, target, release):
    assert current(target) == f"releases/{release}"
    res = p.tether("verify", "--target", str(target))
    assert res.code == 0, res.err


@pytest.fixture
def live_v1(project_live, tmp_path):
    """production runs v1.0.0, deployed to a serving directory."""
    project = project_live  # promote_to(project, "fraud-detector@v1.0.0"), shared
    target = tmp_path / "serving"
    res = deploy(project, target)
    assert res.code == 0, res.err
    return project, target


def test_deploy_materialises_verifies_and_logs(live_v1):
    p, target = live_v1
    assert_serving_verified(p, target, "fraud-detector@v1.0.0")
    release = target / "releases/fraud-detector@v1.0.0"
    assert (release / "models/fraud-detector/model.skops").is_file()
    assert (release / "src/fraud_detector/train.py").is_file()  # the code of the tuple travels too
    assert not (release / "data/raw/transactions.parquet").exists()  # data only with --full
    assert not os.path.samefile(release / "models/fraud-detector/model.skops",
                                cache_object(p, _md5(p, "model.skops"))), "never a hardlink into the cache"
    log = [json.loads(line) for line in (target / "deploy.log").read_text().splitlines()]
    assert log[-1]["outcome"] == "deployed" and log[-1]["to"] == "fraud-detector@v1.0.0"
    assert {"time", "from", "to", "release", "commit", "outcome"} <= set(log[-1])
    res = deploy(p, target, "--json")
    assert res.json()["outcome"] == "noop"


def _md5(p, name, tag="fraud-detector@v1.0.0"):
    m = p.ok("show", tag, "--json").json()
    return next(w["md5"] for w in m["components"]["weights"] if w["path"].endswith(name))


def test_rollback_on_the_host_is_a_symlink_switch(live_v1):
    p, target = live_v1
    v2 = threshold_release(p, 0.35)
    promote_to(p, v2)
    assert deploy(p, target, "--json").json()["outcome"] == "deployed"
    assert_serving_verified(p, target, v2)
    p.ok("rollback", "--env", "production", "--approver", "ops", "--reason", "alerts")
    t0 = time.perf_counter()
    res = deploy(p, target, "--json")
    assert res.json()["outcome"] == "switched", res.err
    assert_serving_verified(p, target, "fraud-detector@v1.0.0")
    assert time.perf_counter() - t0 < 30  # sanity only; the bench measures it


def test_keep_prunes_old_releases_but_never_live_or_rollback_target(live_v1):
    p, target = live_v1
    tags = [threshold_release(p, v) for v in (0.31, 0.32, 0.33)]
    for tag in tags:
        promote_to(p, tag)
        assert deploy(p, target, "--keep", "1").code == 0
    names = sorted(x.name for x in (target / "releases").iterdir())
    assert names == sorted([tags[-1], tags[-2]]), names  # live + the one before it
    assert_serving_verified(p, target, tags[-1])


def test_missing_object_on_remote_leaves_target_untouched(live_v1):
    p, target = live_v1
    v2 = threshold_release(p, 0.35)
    promote_to(p, v2)
    md5 = _md5(p, "threshold.json", v2)
    shutil.rmtree(p.root / ".dvc/cache")  # the host has nothing cached ...
    (p.store / "files/md5" / md5[:2] / md5[2:]).unlink()  # ... and the remote lost an object
    before = sorted(os.listdir(target / "releases"))
    res = deploy(p, target)
    assert res.code == 7 and "threshold.json" in res.err, res.err
    assert sorted(os.listdir(target / "releases")) == before
    assert_serving_verified(p, target, "fraud-detector@v1.0.0")


def test_corrupt_cache_object_is_refused(live_v1):
    p, target = live_v1
    v2 = threshold_release(p, 0.35)
    promote_to(p, v2)
    corrupt(cache_object(p, _md5(p, "metrics.json", v2)))
    res = deploy(p, target)
    assert res.code == 6 and "metrics.json" in res.err, res.err
    assert_serving_verified(p, target, "fraud-detector@v1.0.0")
    assert not (target / f"releases/{v2}").exists()


def test_exception_mid_copy_leaves_the_old_release_serving(live_v1, monkeypatch):
    p, target = live_v1
    v2 = threshold_release(p, 0.35)
    promote_to(p, v2)
    from tether.deploy import command as deploy_mod
    from tether.adapters import materialise

    calls = {"n": 0}
    real = materialise._copy

    def flaky(src, dst, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(5, "Input/output error")  # (a full disk is exit 7 now: test_deploy_truth)
        real(src, dst, *args, **kw)

    monkeypatch.setattr(materialise, "_copy", flaky)
    monkeypatch.chdir(p.root)
    for k, v in p.env().items():
        monkeypatch.setenv(k, v)
    with pytest.raises(OSError):
        deploy_mod.deploy(target, "production")
    assert calls["n"] == 3
    assert_serving_verified(p, target, "fraud-detector@v1.0.0")
    log = [json.loads(line) for line in (target / "deploy.log").read_text().splitlines()]
    assert log[-1]["outcome"] == "failed" and "Input/output error" in log[-1]["error"]
    monkeypatch.undo()
    res = deploy(p, target)  # the next deploy cleans the partial directory and succeeds
    assert res.code == 0, res.err
    assert_serving_verified(p, target, v2)


def test_kill_9_at_random_points_never_leaves_a_mixed_current(live_v1):
    p, target = live_v1
    v2 = threshold_release(p, 0.35)
    promote_to(p, v2)
    rng = random.Random(1234)
    iterations = STRESS or 4
    for i in range(iterations):
        # alternate between v2 and v1 so every round really switches
        if i:
            p.ok("rollback", "--env", "production", "--release", v2 if i % 2 == 0 else "fraud-detector@v1.0.0",
                 "--approver", "chaos", "--reason", f"round {i}")
        for d in (target / "releases").iterdir():  # force a full build every round
            if d.name != os.path.basename(current(target)):
                shutil.rmtree(d, ignore_errors=True)
        proc = subprocess.Popen([sys.executable, "-m", "tether.cli", "deploy", "--env", "production", "--target",
                                 str(target)], cwd=p.root, env=p.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        live = os.path.basename(current(target))
        assert live in (v2, "fraud-detector@v1.0.0")
        assert p.tether("verify", "--target", str(target)).code == 0, f"round {i}: current is not verified"
        res = deploy(p, target)  # and the host converges afterwards
        assert res.code == 0, res.err


def test_a_read_only_target_is_a_clear_error(project_live, tmp_path):
    project = project_live  # promote_to(project, "fraud-detector@v1.0.0"), shared
    if os.geteuid() == 0:
        # root ignores permission bits: a path below a regular file cannot be created by anyone
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "serving"
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o555)
    res = deploy(project, target)
    assert res.code == 2 and "cannot write" in res.err and "Traceback" not in res.err


def test_a_release_that_commits_files_under_dot_tether_deploys_and_verifies(project, tmp_path):
    """The signing docs have teams commit `.tether/allowed_signers`: a release directory keeps
    tether's own records in `.tether/` too, and the check must tell the two apart (the release's
    file is part of its git tree; tether's records are not)."""
    (project.root / ".tether").mkdir(exist_ok=True)
    (project.root / ".tether/allowed_signers").write_text("# the team's signers, one per line\n")
    project.commit_all("commit the allowed signers file")
    tag = threshold_release(project, 0.41)
    promote_to(project, tag)  # the smoke gate runs the release in a worker: it verifies the tree first
    target = tmp_path / "serving"
    res = deploy(project, target)
    assert res.code == 0, res.err
    assert_serving_verified(project, target, tag)
    release = target / "releases" / tag
    assert (release / ".tether/allowed_signers").read_text().startswith("# the team's signers")
    (release / ".tether/allowed_signers").chmod(0o644)
    (release / ".tether/allowed_signers").write_text("ops@example.com ssh-ed25519 AAAA…\n")  # the release's file, edited
    res = project.tether("verify", "--target", str(target))
    assert res.code == 6, (res.code, res.err)
