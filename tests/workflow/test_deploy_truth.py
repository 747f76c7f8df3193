"""Deploy tells the truth: it never reports a release live that this clone and origin disagree
on, never switches a directory serving another environment without being told, serves every
release from a --repo host's own DVC remote, and names storage faults and a full disk with
their exit codes. Real git, DVC, S3 (moto behind a real HTTP proxy) and a real tmpfs."""

from __future__ import annotations

import json
import os

from project import BIN, Project, threshold_release
from shapes import build_churn, clone, retrain_churn

V1 = "fraud-detector@v1.0.0"


def deploy(p: Project, target, *extra, env="production", cwd=None):
    return p.tether("deploy", "--env", env, "--target", str(target), *extra, cwd=cwd)


def current(target):
    link = target / "current"
    return os.readlink(link) if link.is_symlink() else None


def log_lines(target) -> list[dict]:
    path = target / "deploy.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def move(p: Project, action: str, *args: str, cwd=None):
    base = ["--approver", "ops", "--reason", "incident"]
    if action == "promote":
        base += ["--skip-staging", "test", "--allow-regression", "test"]
    return p.tether(action, *args, *base, cwd=cwd)


# -- 1. an unpushed move is never overruled by origin without a word -------------------------
def _v1_then_v2_pushed(p: Project, tmp_path):
    p.git("push", "-q", "origin", "production")  # v1.0.0 in production on origin too
    v2 = threshold_release(p, 0.35)
    res = move(p, "promote", v2, "--env", "production", "--push")
    assert res.code == 0, res.err
    target = tmp_path / "serving"
    assert deploy(p, target).code == 0
    assert current(target) == f"releases/{v2}"
    return v2, target


def test_rollback_without_push_is_said_and_deploy_refuses_until_pushed(project_live, tmp_path):
    p = project_live
    v2, target = _v1_then_v2_pushed(p, tmp_path)

    res = res_rollback = move(p, "rollback", "--env", "production")
    assert res.code == 0, res.err
    assert "local only: not pushed" in res.out and f"still serve {v2}" in res.out, res.out
    assert "git push origin production" in res.out, res.out

    log_before = log_lines(target)
    for extra in ((), ("--json",), ("--dry-run",)):
        res = deploy(p, target, *extra)
        assert res.code == 4, (extra, res.code, res.out, res.err)
        assert V1 in res.err and v2 in res.err and "not pushed" in res.err, res.err
        assert "git push origin production" in res.err and "nothing was deployed" in res.err, res.err
        assert "already live" not in res.out
        assert current(target) == f"releases/{v2}"
        assert log_lines(target) == log_before

    # the one command the rollback printed, GTO record included, is what publishes the move
    said = res_rollback.out.split("Publish it: ", 1)[1].split(" (or move with --push)", 1)[0].split()
    assert said[:3] == ["git", "push", "origin"] and said[3] == "production" and "#production#" in said[4], said
    p.git(*said[1:])
    assert said[4] in p.git("ls-remote", "--tags", "origin")
    res = deploy(p, target, "--json")
    assert res.code == 0, res.err
    assert res.json()["release"] == V1 and current(target) == f"releases/{V1}"


def test_rollback_json_says_local_only_and_push_does_not(project_live, tmp_path):
    p = project_live
    v2, _target = _v1_then_v2_pushed(p, tmp_path)
    res = move(p, "rollback", "--env", "production", "--json")
    assert res.code == 0, res.err
    lo = res.json()["local_only"]
    gto_tag = p.git("log", "-1", "--format=%(trailers:key=Tether-Gto-Tag,valueonly)", "production").strip()
    assert gto_tag.startswith("fraud-detector#production#"), gto_tag
    assert lo == {"branch": "production", "origin_has_branch": True, "origin_release": v2,
                  "push": f"git push origin production {gto_tag}"}, lo
    # v2 again: production was rolled back away from it, so the override quotes that rollback's reason
    res = move(p, "promote", v2, "--env", "production", "--push", "--json", "--override-rollback", "incident: over")
    assert res.code == 0, res.err
    assert res.json()["local_only"] is None and "local only" not in res.out

    # this clone's production merely behind origin's (a teammate's pushed rollback): origin's is served
    target = tmp_path / "serving"
    mate = clone(p, tmp_path / "mate")
    res = move(p, "rollback", "--env", "production", "--push", cwd=mate)
    assert res.code == 0, res.err
    res = deploy(p, target, "--json")
    assert res.code == 0, res.err
    assert res.json()["release"] == V1 and current(target) == f"releases/{V1}"


def test_a_diverged_environment_is_refused(project_live, tmp_path):
    p = project_live
    v2, target = _v1_then_v2_pushed(p, tmp_path)
    mate = clone(p, tmp_path / "mate")
    res = move(p, "rollback", "--env", "production", "--json")  # here: back to v1.0.0, not pushed
    assert res.code == 0, res.err
    # GTO numbers its assignment tags per clone: ours would clash by name with the teammate's
    # (a fetch refuses a clobbered tag, exit 7); drop ours to see the branches alone
    p.git("tag", "-d", res.json()["notes"]["Tether-Gto-Tag"])
    res = move(p, "rollback", "--env", "production", "--push", cwd=mate)  # the teammate's, pushed
    assert res.code == 0, res.err
    res = deploy(p, target)
    assert res.code == 4 and "diverged" in res.err and "nothing was deployed" in res.err, res.err
    assert current(target) == f"releases/{v2}"


def test_teammate_clone_of_churn_rolls_back_without_push_and_deploy_refuses(tmp_path):
    """Another shape (a `dvc add`ed model, no pipeline bundle), on a fresh clone of the bare
    origin after `dvc pull`."""
    p = build_churn(tmp_path / "churn")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    assert move(p, "promote", v1, "--env", "production", "--push").code == 0
    retrain_churn(p, 2)
    p.git("push", "-q", "origin", "main")
    v2 = p.ok("release", "--push", "--json").json()["tag"]
    assert move(p, "promote", v2, "--env", "production", "--push").code == 0

    mate = clone(p, tmp_path / "mate")
    p.sh(os.path.join(BIN, "dvc"), "pull", "-q", cwd=mate)
    target = tmp_path / "serving"
    assert deploy(p, target, cwd=mate).code == 0
    assert current(target) == f"releases/{v2}"
    res = move(p, "rollback", "--env", "production", cwd=mate)
    assert res.code == 0 and "local only" in res.out, res.out
    res = deploy(p, target, cwd=mate)
    assert res.code == 4 and v1 in res.err and "git push origin production" in res.err, res.err
    assert current(target) == f"releases/{v2}"
    p.git("push", "-q", "origin", "production", cwd=mate)
    assert deploy(p, target, cwd=mate).code == 0
    assert current(target) == f"releases/{v1}"


# -- 2. another environment onto a serving directory ------------------------------------------
def tree(root) -> dict:
    """Every entry under root (symlinks by target), except the lock a deploy opens."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel == os.path.join(".tether", "lock"):
                continue
            out[rel] = ("link", os.readlink(path)) if os.path.islink(path) else \
                ("dir",) if os.path.isdir(path) else ("file", open(path, "rb").read())
    return out


def test_another_environment_onto_a_serving_directory_needs_force(project_live, tmp_path):
    p = project_live
    v2 = threshold_release(p, 0.35)
    assert move(p, "promote", v2, "--env", "staging", "--push").code == 0
    p.git("push", "-q", "origin", "production")
    mate = clone(p, tmp_path / "mate")  # a teammate's fresh clone of the bare origin
    p.sh(os.path.join(BIN, "dvc"), "pull", "-q", cwd=mate)
    target = tmp_path / "serving"
    assert deploy(p, target, cwd=mate).code == 0
    assert current(target) == f"releases/{V1}"

    before = tree(target)
    for extra in ((), ("--dry-run",), ("--json",)):
        res = deploy(p, target, *extra, env="staging", cwd=mate)
        assert res.code == 4, (extra, res.code, res.out, res.err)
        assert f"serves production ({V1})" in res.err and "--force" in res.err, res.err
        assert tree(target) == before

    res = deploy(p, target, "--force", "--json", env="staging", cwd=mate)
    assert res.code == 0, res.err
    assert current(target) == f"releases/{v2}"
    last = log_lines(target)[-1]
    assert last["env"] == "staging" and last["forced"] == f"replaced production ({V1})", last

    # now it serves staging: production back onto it is the same question
    res = deploy(p, target, cwd=mate)
    assert res.code == 4 and f"serves staging ({v2})" in res.err, res.err
    assert current(target) == f"releases/{v2}"
    # the same release live in both: a forced deploy still records which environment DIR serves
    assert move(p, "promote", v2, "--env", "production", "--push", cwd=mate).code == 0
    res = deploy(p, target, "--force", "--json", cwd=mate)
    assert res.code == 0 and res.json()["outcome"] == "switched", (res.out, res.err)
    assert log_lines(target)[-1]["env"] == "production"
    assert deploy(p, target, "--json", cwd=mate).json()["outcome"] == "noop"


# -- 3. a --repo host serves every release from its own DVC remote ----------------------------
def test_repo_host_rolls_back_to_a_release_made_before_the_remote_was_committed(project_live, tmp_path):
    """v1.0.0's tree names the template's placeholder remote (../.dvcstore, nothing there on a
    host); the team then commits a real remote and releases v1.1.0. The host, which has only
    the git URL, deploys v1.1.0, then the rollback to v1.0.0."""
    p = project_live
    p.git("push", "-q", "origin", "production")
    p.dvc("remote", "add", "-f", "-d", "shared", str(p.store))
    p.dvc("remote", "remove", "--local", "local")
    p.commit_all("DVC remote committed")
    p.git("push", "-q", "origin", "main")
    v2 = threshold_release(p, 0.35)
    assert move(p, "promote", v2, "--env", "production", "--push").code == 0

    host = tmp_path / "host"
    res = deploy(p, host, "--repo", str(p.origin), cwd=tmp_path)
    assert res.code == 0, res.err
    assert current(host) == f"releases/{v2}"

    assert move(p, "rollback", "--env", "production", "--push").code == 0
    res = deploy(p, host, "--repo", str(p.origin), "--json", cwd=tmp_path)
    assert res.code == 0, (res.code, res.out, res.err)
    assert res.json()["release"] == V1 and current(host) == f"releases/{V1}"
    assert p.tether("verify", "--target", str(host), cwd=tmp_path).code == 0
    local = (host / ".tether/repo/.dvc/config.local").read_text()  # what served it: the host's own
    assert "shared" in local and str(p.store) in local, local


def test_repo_host_without_a_usable_remote_names_its_own_config(project_live, tmp_path):
    """The first deploy on a host is of a release whose tree names no usable remote: exit 7,
    and the hint names the host's .dvc/config.local; written there, the same deploy works."""
    p = project_live
    p.git("push", "-q", "origin", "production")
    host = tmp_path / "host"
    res = deploy(p, host, "--repo", str(p.origin), cwd=tmp_path)
    assert res.code == 7, (res.code, res.out, res.err)
    clone_dir = host / ".tether/repo"
    assert f"{clone_dir}/.dvc/config.local" in res.err, res.err
    assert not (host / "current").exists()
    p.sh(os.path.join(BIN, "dvc"), "remote", "add", "--local", "-d", "mine", str(p.store), cwd=clone_dir)
    res = deploy(p, host, "--repo", str(p.origin), cwd=tmp_path)
    assert res.code == 0, res.err
    assert current(host) == f"releases/{V1}"


# -- 4. storage errors get the storage exit code ---------------------------------------------
def _on_s3(p: Project, s3: dict) -> str:
    """The S3 remote committed (as in production), a release pushed there and live in production
    on origin; returns its tag."""
    p.dvc("remote", "add", "-f", "-d", "s3", s3["url"])
    p.dvc("remote", "modify", "s3", "endpointurl", s3["endpoint"])
    p.dvc("remote", "remove", "--local", "local")
    p.commit_all("DVC remote on S3")
    p.git("push", "-q", "origin", "main")
    v2 = threshold_release(p, 0.35)
    assert move(p, "promote", v2, "--env", "production", "--push").code == 0
    return v2


def _host(p: Project, host, endpoint: str):
    """A serving host's clone of origin whose own config points the S3 remote at `endpoint`."""
    clone_dir = host / ".tether" / "repo"
    clone_dir.parent.mkdir(parents=True)
    p.git("clone", "-q", "--no-checkout", str(p.origin), str(clone_dir), cwd=host.parent)
    (clone_dir / ".dvc").mkdir()
    (clone_dir / ".dvc" / "config.local").write_text(f"['remote \"s3\"']\n    endpointurl = {endpoint}\n")
    return clone_dir


def test_storage_faults_during_deploy_are_exit_7_naming_object_and_endpoint(project, s3_remote, tmp_path):
    """The small objects a deploy reads first arrive; the weights, streamed from S3 into the
    release directory, meet a 403, a 500 (after botocore's retries), an endpoint that dies, and
    an object deleted between the existence check and the read."""
    from deployfaults import FaultProxy

    p = project
    v2 = _on_s3(p, s3_remote)
    weights = next(e for e in p.ok("show", v2, "--json").json()["components"]["weights"]
                   if e["path"].endswith("model.skops"))
    for mode, says in (("403", "permission denied"), ("500", "failed"), ("die", "failed"), ("delete", "lost")):
        with FaultProxy(s3_remote["endpoint"]) as proxy:
            host = tmp_path / f"host-{mode}"
            _host(p, host, proxy.url)
            proxy.mode, proxy.only = mode, weights["md5"][2:]
            res = deploy(p, host, "--repo", str(p.origin), cwd=tmp_path)
        assert proxy.hits, (mode, res.err)
        assert res.code == 7, (mode, res.code, res.out, res.err)
        err = " ".join(res.err.split())
        assert "Traceback" not in err and says in err and "models/fraud-detector/model.skops" in err, (mode, err)
        assert f"/files/md5/{weights['md5'][:2]}/{weights['md5'][2:]} at {proxy.url}" in err, (mode, err)
        assert "nothing was switched" in err, (mode, err)
        assert not (host / "current").exists()
        assert list((host / "releases").iterdir()) == [], mode  # no .partial left behind
        assert log_lines(host)[-1]["outcome"] == "failed"
    # the endpoint answering again and the object pushed again: the same host deploys
    host = tmp_path / "host-die"
    (host / ".tether/repo/.dvc/config.local").write_text(
        f"['remote \"s3\"']\n    endpointurl = {s3_remote['endpoint']}\n")
    p.dvc("push", "-q")
    res = deploy(p, host, "--repo", str(p.origin), cwd=tmp_path)
    assert res.code == 0, res.err
    assert current(host) == f"releases/{v2}"


# -- 5. a full disk ----------------------------------------------------------------------------
def test_deploy_into_a_full_file_system_is_exit_7_and_cleans_up(tmp_path):
    """A big-weights model (another shape), deployed from a teammate's fresh clone after `dvc
    pull` into a 3 MiB tmpfs: v1.0.0 (1 MiB) fits, v1.0.1 (4 MiB) does not."""
    from deployfaults import small_tmpfs
    from shapes import big_release, build_big

    p = build_big(tmp_path / "big", 1)
    assert move(p, "promote", "big@v1.0.0", "--env", "production", "--push").code == 0
    v2 = big_release(p, 2, 4)
    mate = clone(p, tmp_path / "mate")
    p.sh(os.path.join(BIN, "dvc"), "pull", "-q", cwd=mate)
    with small_tmpfs(tmp_path / "disk", 3 << 20) as disk:
        target = disk / "serving"
        assert deploy(p, target, cwd=mate).code == 0
        assert current(target) == "releases/big@v1.0.0"
        assert move(p, "promote", v2, "--env", "production", "--push", cwd=mate).code == 0
        res = deploy(p, target, cwd=mate)
        assert res.code == 7, (res.code, res.out, res.err)
        err = " ".join(res.err.split())
        assert f"no space left on the file system of {target}" in err and "needs about 4.0 MiB" in err, err
        assert "MiB free" in err and "the previous release keeps serving" in err and "Traceback" not in err, err
        assert current(target) == "releases/big@v1.0.0"
        assert sorted(d.name for d in (target / "releases").iterdir()) == ["big@v1.0.0"]
        assert not list(target.rglob("*.tether-tmp"))
        assert log_lines(target)[-1]["outcome"] == "failed"
        assert p.tether("verify", "--target", str(target), cwd=mate).code == 0
