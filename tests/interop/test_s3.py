"""The whole lifecycle against a real S3-compatible server (moto's, on 127.0.0.1), with the
remote committed in .dvc/config and credentials only in the environment, as in production."""

import os
import shutil

from s3server import delete_objects


def use_s3(p, s3):
    p.dvc("remote", "add", "-f", "-d", "s3", s3["url"])
    p.dvc("remote", "modify", "s3", "endpointurl", s3["endpoint"])
    p.dvc("remote", "remove", "--local", "local")
    p.commit_all("DVC remote on S3")
    p.git("push", "-q", "origin", "main")


def test_push_pull_round_trip_through_dvc_s3(project, s3_remote, tmp_path):
    use_s3(project, s3_remote)
    project.dvc("push", "-q")
    fresh = tmp_path / "fresh"
    project.git("clone", "-q", str(project.origin), str(fresh), cwd=tmp_path)
    dvc = os.path.join(os.path.dirname(project.env()["PATH"].split(os.pathsep)[0]), "bin", "dvc")
    dvc = shutil.which("dvc", path=project.env()["PATH"]) or dvc
    project.sh(dvc, "pull", "-q", cwd=fresh)
    from tether.digest import sha256_file

    m = project.ok("show", "fraud-detector@v1.0.0", "--json").json()
    for e in m["components"]["weights"] + m["components"]["data"]:
        assert sha256_file(fresh / e["path"]) == e["sha256"], e["path"]


def test_lifecycle_on_s3(project, s3_remote, tmp_path):
    use_s3(project, s3_remote)
    v1 = project.release_code_change("on s3")  # --push sends the objects to S3 first
    assert project.ok("check", "--json").json()["ok"]
    for env in ("staging", "production"):
        project.ok("promote", v1, "--env", env, "--approver", "ci", "--reason", "s3 flow", "--push")

    # A serving host that has only the git URL and S3 credentials: clone, fetch from S3, verify.
    target = tmp_path / "host"
    res = project.tether("deploy", "--env", "production", "--target", str(target), "--repo", str(project.origin),
                         cwd=tmp_path)
    assert res.code == 0, res.err
    assert os.readlink(target / "current") == f"releases/{v1}"
    assert project.tether("verify", "--target", str(target), cwd=tmp_path).code == 0

    v2 = project.release_code_change("second on s3")
    project.ok("promote", v2, "--env", "staging", "--approver", "ci", "--reason", "next", "--push")
    project.ok("promote", v2, "--env", "production", "--approver", "ci", "--reason", "next", "--push")
    assert project.tether("deploy", "--env", "production", "--target", str(target), "--repo", str(project.origin),
                          cwd=tmp_path).code == 0
    assert os.readlink(target / "current") == f"releases/{v2}"
    project.ok("rollback", "--env", "production", "--approver", "ops", "--reason", "back", "--push")
    res = project.tether("deploy", "--env", "production", "--target", str(target), "--repo", str(project.origin),
                         "--json", cwd=tmp_path)
    assert res.code == 0 and res.json()["outcome"] == "switched"
    assert os.readlink(target / "current") == f"releases/{v1}"


def test_objects_missing_on_s3_are_refused_with_exit_7(project, s3_remote, tmp_path):
    use_s3(project, s3_remote)
    v1 = project.release_code_change("on s3")
    project.ok("promote", v1, "--env", "staging", "--approver", "ci", "--reason", "r", "--push")
    deleted = delete_objects(s3_remote["endpoint"], s3_remote["bucket"], "dvcstore/files/md5/")
    assert deleted
    assert project.tether("check").code == 7
    target = tmp_path / "host"
    res = project.tether("deploy", "--env", "staging", "--target", str(target), "--repo", str(project.origin),
                         cwd=tmp_path)
    assert res.code == 7 and "lacks" in res.err, res.err
    assert not (target / "current").exists()


def test_an_unreachable_remote_is_a_storage_error(project, s3_remote):
    use_s3(project, s3_remote)
    project.dvc("remote", "modify", "--local", "s3", "endpointurl", "http://127.0.0.1:9")  # nothing listens
    project.code_only_change("offline")
    res = project.tether("release")
    assert res.code == 7 and "unreachable" in res.err, res.err
    assert "Traceback" not in res.err
