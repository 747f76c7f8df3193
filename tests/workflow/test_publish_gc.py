"""Publishing that is complete, and a gc that never loses a teammate's work (issue 26 item 3;
issue 27 items 10-13): real git, real DVC, a bare origin, a local remote and moto's S3."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from project import BIN
from publishhelp import age, build_evaldir, fresh_clone_pulls, lock_md5, new_commit, store_objects
from shapes import clone, listing, object_path

MODEL = "textclf"


def test_release_push_leaves_the_commit_pullable_with_plain_dvc_pull(tmp_path):
    p = build_evaldir(tmp_path / "p")
    res = p.ok("release", "--push", "--json").json()
    tag = res["tag"]
    report = lock_md5(p.root, "eval/report")
    assert object_path(p.store, report).exists()
    for child in listing(p.store, report):
        assert object_path(p.store, child["md5"]).exists()
    # a teammate: fresh clone, checkout the tag, plain dvc pull
    assert fresh_clone_pulls(p, tmp_path / "mate") == {}
    mate = tmp_path / "mate"
    p.sh("git", "checkout", "-q", tag, cwd=mate)
    p.sh(os.path.join(BIN, "dvc"), "pull", "-q", cwd=mate)
    assert (mate / "eval/report/summary.json").read_text() == (p.root / "eval/report/summary.json").read_text()


def test_check_reports_a_release_whose_commit_is_not_pullable(tmp_path):
    p = build_evaldir(tmp_path / "p")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    assert p.ok("check", "--json").json()["ok"]
    report = lock_md5(p.root, "eval/report")
    object_path(p.store, report).unlink()  # lost on the remote (a teammate's gc, a bucket policy)
    res = p.tether("check", "--json")
    assert res.code == 7, res.out + res.err
    found = res.json()["findings"]
    assert [(f["tag"], f["kind"]) for f in found] == [(tag, "missing-objects")]
    assert "eval/report" in found[0]["message"] and "dvc pull" in found[0]["message"]


def test_a_retried_release_push_whose_tag_landed_is_published_and_repairs_lost_objects(tmp_path):
    p = build_evaldir(tmp_path / "p")
    first = p.ok("release", "--push", "--json").json()
    tag = first["tag"]
    # a CI retry of the same job (its first run killed after the tag was pushed): published, exit 0
    again = p.tether("release", "--push", "--json")
    assert again.code == 0, again.out + again.err
    data = again.json()
    assert data["tag"] == tag and data["already_published"] and data["uploaded_missing"] == []
    assert p.tags() == [tag]
    # objects of the published release lost on the remote: the retry uploads them again
    weights = lock_md5(p.root, "models/textclf")
    report = lock_md5(p.root, "eval/report")
    object_path(p.store, weights).unlink()
    object_path(p.store, listing(p.store, report)[0]["md5"]).unlink()
    assert p.tether("check").code == 7
    res = p.tether("release", "--push")
    assert res.code == 0, res.out + res.err
    assert "already published" in res.out and "models/textclf" in res.out and "eval/report" in res.out
    assert p.ok("check", "--json").json()["ok"]
    assert fresh_clone_pulls(p, tmp_path / "fresh") == {}
    # a teammate's clone of main (the released commit), dvc pull, the same retry: published
    mate = clone(p, tmp_path / "mate")
    p.sh(os.path.join(BIN, "dvc"), "pull", "-q", cwd=mate)
    res = p.tether("release", "--push", cwd=mate)
    assert res.code == 0 and f"{tag} is already published" in res.out, res.out + res.err


def test_promote_push_publishes_objects_the_remote_lacks_from_the_local_cache(tmp_path):
    p = build_evaldir(tmp_path / "p")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    # a teammate's path: fresh clone, dvc pull of the model; then the remote loses the weights
    mate = clone(p, tmp_path / "mate")
    p.sh(os.path.join(BIN, "dvc"), "pull", "-q", "models/textclf", cwd=mate)
    weights = lock_md5(p.root, "models/textclf")
    object_path(p.store, weights).unlink()
    res = p.tether("promote", tag, "--env", "production", "--approver", "ci", "--reason", "t",
                   "--skip-staging", "t", "--push", cwd=mate)
    assert res.code == 0, res.out + res.err
    assert object_path(p.store, weights).exists()
    assert fresh_clone_pulls(p, tmp_path / "fresh") == {}


# -- gc: whatever a ref reaches, on origin or here, and whatever is young, stays ---------------
def test_gc_cloud_keeps_a_teammates_pushed_branch_and_deletes_only_old_unreachable_objects(tmp_path):
    p = build_evaldir(tmp_path / "p")
    p.ok("release", "--push")
    # a teammate's branch: committed, `dvc push` done, branch pushed; no release, no environment
    mate = clone(p, tmp_path / "mate")
    p.sh(os.path.join(BIN, "dvc"), "pull", "-q", cwd=mate)
    p.git("switch", "-q", "-c", "exp/alpha", cwd=mate)
    params = mate / "params.yaml"
    params.write_text(params.read_text().replace("alpha: 1.0", "alpha: 0.3"))
    p.sh(os.path.join(BIN, "dvc"), "repro", "-q", cwd=mate)
    p.git("add", "-A", cwd=mate)
    p.git("commit", "-q", "-m", "alpha 0.3", cwd=mate)
    p.sh(os.path.join(BIN, "dvc"), "push", "-q", cwd=mate)
    p.git("push", "-q", "origin", "exp/alpha", cwd=mate)
    branch_model = lock_md5(mate, "models/textclf")
    # an object nothing names, old (an abandoned experiment's upload) and one young
    junk_old, junk_young = "0" * 31 + "1", "0" * 31 + "2"
    for md5 in (junk_old, junk_young):
        path = object_path(p.store, md5)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(md5)
    age(store_objects(p).values(), 30)  # everything old but junk_young: only reachability protects
    age([object_path(p.store, junk_young)], 0)

    dry = p.ok("gc", "--cloud", "--dry-run", "--json").json()
    assert dry["remote_delete"] == [junk_old]
    assert dry["kept_on_remote"]["a branch or tag on origin reaches it"] >= 1
    assert dry["kept_on_remote"]["younger than the grace period (it may belong to a publication in progress)"] == 1
    text = p.ok("gc", "--cloud", "--dry-run").out
    assert "would keep" in text and "a branch or tag on origin reaches it" in text and "would delete" in text
    assert object_path(p.store, junk_old).exists()

    res = p.ok("gc", "--cloud")
    assert "deleted 1 of 1 remote object(s)" in res.err
    assert not object_path(p.store, junk_old).exists() and object_path(p.store, junk_young).exists()
    assert object_path(p.store, branch_model).exists()
    assert fresh_clone_pulls(p, tmp_path / "fresh") == {}
    # --prune-now drops the grace period, after a warning
    res = p.ok("gc", "--cloud", "--prune-now")
    assert "warning: no grace period" in res.err
    assert not object_path(p.store, junk_young).exists()
    assert fresh_clone_pulls(p, tmp_path / "fresh2") == {}


def test_gc_in_a_clone_on_production_keeps_the_unpushed_work_of_its_main(tmp_path):
    p = build_evaldir(tmp_path / "p")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", tag, "--env", "production", "--approver", "ci", "--reason", "t", "--skip-staging", "t")
    new_commit(p, 0.4)  # committed on main, never pushed anywhere: this cache holds the only copy
    model = lock_md5(p.root, "models/textclf")
    cached = object_path(p.root / ".dvc/cache", model)
    p.git("checkout", "-q", "production")
    p.dvc("checkout", "-q")
    age([f for f in (p.root / ".dvc/cache/files").rglob("*") if f.is_file()], 30)
    junk = object_path(p.root / ".dvc/cache", "f" * 32)
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_text("junk")
    age([junk], 30)
    res = p.ok("gc", "--json").json()
    assert res["cache_delete"] == ["f" * 32]
    assert cached.exists() and not junk.exists()
    p.git("checkout", "-q", "main")
    p.dvc("checkout", "-q")
    assert p.dvc("status", "-q", check=False).code == 0


def test_gc_grace_is_configurable_and_checked(tmp_path):
    p = build_evaldir(tmp_path / "p")
    junk = object_path(p.root / ".dvc/cache", "e" * 32)
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_text("junk")
    age([junk], 2)
    assert p.ok("gc", "--dry-run", "--json").json()["cache_delete"] == []
    assert p.ok("gc", "--grace", "1d", "--dry-run", "--json").json()["cache_delete"] == ["e" * 32]
    res = p.tether("gc", "--grace", "soon")
    assert res.code == 2 and "grace period" in res.err and junk.exists()


def test_gc_cloud_with_a_dead_s3_endpoint_exits_7_naming_it(tmp_path, s3_remote):
    from s3server import free_port

    p = build_evaldir(tmp_path / "p", s3=s3_remote)
    p.ok("release", "--push")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    p.dvc("remote", "modify", "--local", "s3", "endpointurl", dead)
    for args in (["gc", "--cloud", "--dry-run"], ["gc", "--cloud"], ["gc", "--cloud", "--json"]):
        res = p.tether(*args)
        assert res.code == 7, (args, res.code, res.out, res.err)
        assert dead in res.err and "unreachable" in res.err, res.err
        assert "--debug" not in res.err and "Traceback" not in res.err
    p.dvc("remote", "modify", "--local", "s3", "endpointurl", s3_remote["endpoint"])
    assert p.ok("check", "--json").json()["ok"]  # nothing was deleted


# -- the race: publishing in one clone, gc --cloud in a teammate's -----------------------------
ROUNDS = int(os.environ.get("TETHER_RACE_ROUNDS", "3"))


def _start(p, args, cwd):
    return subprocess.Popen([sys.executable, "-m", "tether.cli", *args], cwd=cwd, env=p.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def _race(p, publisher_args, gc_clone, rng):
    """The publisher starts; the teammate's gc --cloud starts at a random offset. Both must succeed."""
    pub = _start(p, publisher_args, p.root)
    offset = rng.uniform(0, 2.5)
    try:
        pub.wait(timeout=offset)  # the offset, or sooner if publishing is done already
    except subprocess.TimeoutExpired:
        pass
    gc = _start(p, ["gc", "--cloud"], gc_clone)
    out, err = pub.communicate(timeout=600)
    assert pub.returncode == 0, (publisher_args, out, err)
    gout, gerr = gc.communicate(timeout=600)
    assert gc.returncode == 0, (gout, gerr)
    return out


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_release_and_promote_push_race_gc_cloud_in_another_clone(tmp_path, storage, request):
    s3 = request.getfixturevalue("s3_remote") if storage == "s3" else None
    p = build_evaldir(tmp_path / "p", s3=s3)
    p.ok("release", "--push")
    mate = clone(p, tmp_path / "mate")
    rng = random.Random(int(os.environ.get("TETHER_RACE_SEED", "27")))
    for i in range(ROUNDS):
        if s3 is None:  # every object already on the remote is old: only reachability keeps it
            age(store_objects(p).values(), 30)
        new_commit(p, round(0.3 + 0.05 * (i + 1), 2))  # on main, not pushed: only the tag will name it
        tag = _race(p, ["release", "--push", "--json"], mate, rng)
        tag = __import__("json").loads(tag)["tag"]
        assert fresh_clone_pulls(p, tmp_path / f"fresh-{i}-release") == {}
        _race(p, ["promote", tag, "--env", "production", "--approver", "ci", "--reason", "race",
                  "--skip-staging", "race", "--allow-regression", "race", "--push"], mate, rng)
        assert fresh_clone_pulls(p, tmp_path / f"fresh-{i}-promote") == {}
    assert p.ok("check", "--json").json()["ok"]


def test_gc_cloud_on_s3_dates_objects_by_last_modified_and_reports_each_batch(tmp_path, s3_remote):
    import time

    import boto3
    from s3server import _client_kwargs

    p = build_evaldir(tmp_path / "p", s3=s3_remote)
    p.ok("release", "--push")
    s3 = boto3.client("s3", endpoint_url=s3_remote["endpoint"], **_client_kwargs())
    junk = "dvcstore/files/md5/00/" + "0" * 27 + "abc"
    s3.put_object(Bucket=s3_remote["bucket"], Key=junk, Body=b"junk")
    young = "younger than the grace period (it may belong to a publication in progress)"
    dry = p.ok("gc", "--cloud", "--dry-run", "--json").json()
    assert dry["remote_delete"] == [] and dry["kept_on_remote"][young] >= 1
    deadline = time.monotonic() + 30
    while True:  # LastModified has whole seconds: poll until the junk is older than 2 s
        dry = p.ok("gc", "--cloud", "--grace", "2s", "--dry-run", "--json").json()
        if dry["remote_delete"] or time.monotonic() > deadline:
            break
    assert dry["remote_delete"] == ["00" + "0" * 27 + "abc"]
    res = p.ok("gc", "--cloud", "--grace", "2s")
    assert "deleted 1 of 1 remote object(s)" in res.err
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_remote["bucket"], Prefix=junk)
    assert fresh_clone_pulls(p, tmp_path / "fresh") == {}


def test_gc_cloud_deletes_nothing_when_a_releases_directory_listing_is_nowhere(tmp_path):
    """A release's directory output whose file list neither the cache nor the remote holds: gc
    cannot tell which of the remote's files the release needs, so it deletes nothing (exit 7)."""
    p = build_evaldir(tmp_path / "p")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    weights = lock_md5(p.root, "models/textclf")
    assert weights.endswith(".dir")
    files = [c["md5"] for c in listing(p.store, weights)]
    for where in (p.store, p.root / ".dvc/cache"):
        obj = object_path(where, weights)
        obj.chmod(0o644)
        obj.unlink()
    age(store_objects(p).values(), 30)  # old enough: only what protects them keeps them
    before = sorted(store_objects(p))
    res = p.tether("gc", "--cloud", "--json")
    assert res.code == 7, res.out + res.err
    assert tag in res.err and weights in res.err and "nothing was deleted" in res.err, res.err
    assert sorted(store_objects(p)) == before
    assert all(object_path(p.store, m).exists() for m in files)
