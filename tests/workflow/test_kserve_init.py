"""`tether kserve-init`: KServe's storage-initializer contract (issue 29), run the way KServe runs
it. The command is read from examples/k8s/cluster-storage-container.yaml (the container's
`command`, to which KServe appends the storageUri and the destination), on a bare origin whose
DVC remote is S3 (moto's server), from a directory that is no repository (a pod's)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest
import yaml

from project import REPO_ROOT, Project
from s3server import CREDENTIALS

MANIFEST = REPO_ROOT / "examples/k8s/cluster-storage-container.yaml"
RESOLVED = "tether-resolved.json"


def storage_command() -> list[str]:
    doc = yaml.safe_load(MANIFEST.read_text())
    assert doc["kind"] == "ClusterStorageContainer" and "args" not in doc["spec"]["container"]
    assert [f["prefix"] for f in doc["spec"]["supportedUriFormats"]] == ["tether://"]
    return list(doc["spec"]["container"]["command"])


def kserve(p: Project, uri: str, dest: Path, pod: Path, env: dict | None = None):
    """What the pod runs: the container's command, then the two arguments KServe appends."""
    pod.mkdir(parents=True, exist_ok=True)
    return p.sh(*storage_command(), uri, str(dest), cwd=pod, check=False, env=env)


def use_s3(p: Project, s3: dict) -> None:
    p.dvc("remote", "add", "-f", "-d", "s3", s3["url"])
    p.dvc("remote", "modify", "s3", "endpointurl", s3["endpoint"])
    p.dvc("remote", "remove", "--local", "local")
    p.dvc("push", "-q")  # v1.0.0's objects too: a rollback serves them
    p.commit_all("DVC remote on S3")
    p.git("push", "-q", "origin", "main")


def promote(p: Project, tag: str, env: str = "production") -> None:
    p.ok("promote", tag, "--env", env, "--approver", "ci", "--reason", "test", "--skip-staging", "test",
         "--allow-regression", "test", "--push")


def loadable(dest: Path) -> list[str]:
    """What a runtime could find at DEST (nothing, after a failure)."""
    return sorted(os.listdir(dest)) if dest.exists() else []


@pytest.fixture
def shipped(project, s3_remote):
    """The reference project on S3: v1.0.1 (its tree names the S3 remote) live in production,
    pushed; only the bare origin and the bucket are what a pod can reach."""
    use_s3(project, s3_remote)
    promote(project, "fraud-detector@v1.0.0")  # what a rollback returns to
    tag = project.release_code_change("on s3")
    promote(project, tag)
    return project, tag, s3_remote


def uri_of(p: Project, ref: str, query: str = "") -> str:
    return f"tether://{p.origin}{query}#{ref}"


def s3_client(s3: dict):
    return boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        region_name=CREDENTIALS["AWS_DEFAULT_REGION"])


def weight_keys(p: Project, tag: str, s3: dict) -> list[str]:
    """The S3 keys of the weights' file objects (a directory output's children)."""
    client = s3_client(s3)
    prefix = s3["url"].split("/", 3)[3] + "/files/md5/"
    keys = []
    for e in p.ok("show", tag, "--json").json()["components"]["weights"]:
        md5 = e["md5"]
        key = f"{prefix}{md5[:2]}/{md5[2:]}"
        if md5.endswith(".dir"):
            listing = json.loads(client.get_object(Bucket=s3["bucket"], Key=key)["Body"].read())
            keys += [f"{prefix}{c['md5'][:2]}/{c['md5'][2:]}" for c in listing]
        else:
            keys.append(key)
    return keys


def flip_one_byte(s3: dict, key: str) -> None:
    client = s3_client(s3)
    data = bytearray(client.get_object(Bucket=s3["bucket"], Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=s3["bucket"], Key=key, Body=bytes(data))


def resolved(dest: Path) -> dict:
    return json.loads((dest / RESOLVED).read_text())


def files_of(root: Path) -> dict[str, bytes]:
    return {q.relative_to(root).as_posix(): q.read_bytes() for q in sorted(root.rglob("*")) if q.is_file()}


def test_an_environment_on_a_fresh_pod_then_a_restart_then_a_rollback(shipped, tmp_path):
    p, tag, s3 = shipped
    # refs a pod must not download: kserve-init fetches the branch and the one tag it names
    for i in range(20):
        p.git("tag", f"unrelated-{i}", "main")
    p.git("push", "-q", "origin", "--tags")
    dest = tmp_path / "mnt" / "models"
    dest.mkdir(parents=True)  # KServe's emptyDir, mounted before the init container starts
    trace = tmp_path / "packets.txt"
    res = kserve(p, uri_of(p, "production"), dest, tmp_path / "pod", env={"GIT_TRACE_PACKET": str(trace)})
    assert res.code == 0, res.err
    assert os.readlink(dest / "current") == f"releases/{tag}"
    got = resolved(dest)
    assert got["release"] == tag and got["environment"] == "production" and got["layout"] == "release"
    assert got["commit"] == p.git("rev-parse", f"{tag}^{{commit}}")
    assert got["environment_commit"] == p.git("rev-parse", "production", cwd=p.origin)
    assert got["uri"] == uri_of(p, "production") and got["time"] and len(got["manifest_sha256"]) == 64
    assert sorted(os.listdir(dest)) == sorted(["current", "deploy.log", "releases", RESOLVED])
    packets = trace.read_text()
    assert "ref-prefix refs/heads/production" in packets and f"ref-prefix refs/tags/{tag}" in packets
    assert "unrelated-" not in packets and "refs/tags/fraud-detector@v1.0.0" not in packets
    # what `tether serve --target DEST` accepts: the serving directory, every digest checked again
    check = p.tether("verify", "--target", str(dest), "--json", cwd=tmp_path)
    assert check.code == 0 and check.json()["release"] == tag, check.err

    before = (dest / "releases" / tag).stat().st_ino
    again = kserve(p, uri_of(p, "production"), dest, tmp_path / "pod2")  # the pod restarts
    assert again.code == 0 and "already held" in again.out, again.err
    assert (dest / "releases" / tag).stat().st_ino == before and resolved(dest)["time"] == got["time"]

    # production rolled back to v1.0.0, whose tree names another DVC remote (it predates the S3
    # one): refused, and what DEST held is gone, until the pod names its remote
    p.ok("rollback", "--env", "production", "--approver", "ops", "--reason", "back", "--push")
    failed = kserve(p, uri_of(p, "production"), dest, tmp_path / "pod3")
    assert failed.code == 7 and "lacks" in failed.err and "TETHER_DVC_REMOTE_URL" in failed.err, failed.err
    assert loadable(dest) == []
    endpoint = s3["endpoint"].split("://", 1)[1]
    pod_env = {"TETHER_DVC_REMOTE_URL": s3["url"], "S3_ENDPOINT": endpoint, "S3_USE_HTTPS": "0"}
    back = kserve(p, uri_of(p, "production"), dest, tmp_path / "pod4", env=pod_env)
    assert back.code == 0, back.err
    assert os.readlink(dest / "current") == "releases/fraud-detector@v1.0.0"
    assert resolved(dest)["release"] == "fraud-detector@v1.0.0"
    assert p.tether("verify", "--target", str(dest), cwd=tmp_path).code == 0


@pytest.mark.parametrize("ref", ["production", "TAG"])
def test_one_byte_changed_on_the_remote_leaves_nothing_loadable(shipped, tmp_path, ref):
    p, tag, s3 = shipped
    keys = weight_keys(p, tag, s3)
    assert keys
    flip_one_byte(s3, keys[0])
    for dest in (tmp_path / "absent" / "models", tmp_path / "empty" / "models"):
        if dest.parent.name == "empty":
            dest.mkdir(parents=True)
        res = kserve(p, uri_of(p, tag if ref == "TAG" else ref), dest, tmp_path / "pod")
        assert res.code in (6, 7), (res.code, res.err)
        assert "Traceback" not in res.err
        assert loadable(dest) == []
        assert [q.name for q in dest.parent.iterdir() if q.name != "models"] == []  # no staging left behind


def as_a_mount_point(dest: Path, monkeypatch) -> None:
    """DEST as KServe gives it: an emptyDir mounted there (no rename over it), so kserve-init
    stages inside DEST and renames the entries in once everything is verified."""
    import tether.deploy.kserve_init as ki

    real = os.path.ismount
    monkeypatch.setattr(ki.os.path, "ismount", lambda q: Path(q) == dest or real(q))
    dest.mkdir(parents=True, exist_ok=True)


def test_on_a_mount_point_a_failure_leaves_it_empty(shipped, tmp_path, monkeypatch):
    from tether.deploy.kserve_init import kserve_init
    from tether.errors import TetherError

    p, tag, s3 = shipped
    dest = tmp_path / "mnt" / "models"
    as_a_mount_point(dest, monkeypatch)
    got = kserve_init(uri_of(p, "production", "?layout=kserve"), str(dest))
    assert got["outcome"] == "initialised" and got["files"]
    assert set(os.listdir(dest)) == {*got["files"], RESOLVED}
    flip_one_byte(s3, weight_keys(p, tag, s3)[0])
    with pytest.raises(TetherError):  # the other layout: fetched again, and the changed byte found
        kserve_init(uri_of(p, "production"), str(dest))
    assert loadable(dest) == []


def test_a_release_tag_pins_the_release(shipped, tmp_path):
    p, tag, s3 = shipped
    p.ok("rollback", "--env", "production", "--approver", "ops", "--reason", "back", "--push")  # no matter
    dest = tmp_path / "models"
    res = kserve(p, uri_of(p, tag), dest, tmp_path / "pod")
    assert res.code == 0, res.err
    assert os.readlink(dest / "current") == f"releases/{tag}"
    got = resolved(dest)
    assert got["release"] == tag and got["environment"] is None and got["environment_commit"] is None
    assert p.tether("verify", "--target", str(dest), cwd=tmp_path).code == 0
    missing = kserve(p, uri_of(p, "fraud-detector@v9.9.9"), tmp_path / "none", tmp_path / "pod")
    assert missing.code == 3 and loadable(tmp_path / "none") == []


def test_the_kserve_layout_puts_the_artifact_files_at_the_root(shipped, tmp_path):
    p, tag, s3 = shipped
    dest = tmp_path / "models"
    res = kserve(p, uri_of(p, "production", "?layout=kserve"), dest, tmp_path / "pod")
    assert res.code == 0, res.err
    artifact = p.root / "models/fraud-detector"  # dvc.yaml's artifact path, as released
    want = files_of(artifact)
    got = files_of(dest)
    assert got.pop(RESOLVED) and got == want
    record = resolved(dest)
    assert record["layout"] == "kserve" and set(record["files"]) == set(want)
    again = kserve(p, uri_of(p, "production", "?layout=kserve"), dest, tmp_path / "pod")
    assert again.code == 0 and "already held" in again.out
    (dest / sorted(want)[0]).write_bytes(b"tampered")  # a damaged DEST is replaced, never served
    fixed = kserve(p, uri_of(p, "production", "?layout=kserve"), dest, tmp_path / "pod")
    assert fixed.code == 0 and "already held" not in fixed.out
    assert {k: v for k, v in files_of(dest).items() if k != RESOLVED} == want


def test_usage_errors_touch_nothing(project, tmp_path):
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "theirs.txt").write_text("not kserve-init's")
    res = kserve(project, uri_of(project, "production"), dest, tmp_path / "pod")
    assert res.code == 2 and "did not put there" in res.err
    assert loadable(dest) == ["theirs.txt"]
    bad = kserve(project, f"tether://{project.origin}#v1.0.0", tmp_path / "other", tmp_path / "pod")
    assert bad.code == 2 and not (tmp_path / "other").exists()
    absent = kserve(project, f"tether://{tmp_path}/nowhere.git#production", tmp_path / "x", tmp_path / "pod")
    assert absent.code == 7 and loadable(tmp_path / "x") == []


def test_a_repository_shaped_unlike_the_reference(s3_remote, tmp_path):
    from shapes import build_textclf

    p = build_textclf(tmp_path / "t", s3=s3_remote)
    tag = p.ok("release", "--push", "--json").json()["tag"]
    promote(p, tag)
    dest = tmp_path / "models"
    res = kserve(p, uri_of(p, "production"), dest, tmp_path / "pod")
    assert res.code == 0, res.err
    assert p.tether("verify", "--target", str(dest), "--json", cwd=tmp_path).json()["release"] == tag
    flat = tmp_path / "flat"
    res = kserve(p, uri_of(p, "production", "?layout=kserve"), flat, tmp_path / "pod")
    assert res.code == 0, res.err
    got = files_of(flat)
    got.pop(RESOLVED)
    assert got == files_of(p.root / "models/textclf") and got


@pytest.mark.parametrize("environ, want", [
    ({}, None),
    ({"AWS_ENDPOINT_URL": "http://minio:9000", "S3_ENDPOINT": "other:1"}, "http://minio:9000"),
    ({"S3_ENDPOINT": "minio.ml.svc:9000"}, "https://minio.ml.svc:9000"),
    ({"S3_ENDPOINT": "minio.ml.svc:9000", "S3_USE_HTTPS": "0"}, "http://minio.ml.svc:9000"),
    ({"S3_ENDPOINT": "minio.ml.svc:9000", "S3_USE_HTTPS": "false"}, "http://minio.ml.svc:9000"),
    ({"S3_ENDPOINT": "https://s3.example.com"}, "https://s3.example.com"),
])
def test_the_endpoint_the_way_kserve_gives_it(environ, want):
    from tether.deploy.pod_source import endpoint_from_env

    assert endpoint_from_env(environ) == want
