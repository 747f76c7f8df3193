"""One download per node (issue 29 item 5): serving directories on one host share a node cache
(`tether deploy --node-cache DIR`), and each DVC object crosses the network once. Counted at
the S3 server (moto behind a request log, tests/helpers/s3count.py), not by tether."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from project import Project
from s3count import counting_s3, object_gets
from s3server import CREDENTIALS, make_bucket
from servehelp import until

SRC = Path(__file__).resolve().parents[2] / "src"


def use_s3(p: Project, endpoint: str, bucket: str) -> None:
    p.dvc("remote", "add", "-f", "-d", "s3", f"s3://{bucket}/dvcstore")
    p.dvc("remote", "modify", "s3", "endpointurl", endpoint)
    p.dvc("remote", "remove", "--local", "local")
    p.dvc("push", "-q")
    p.commit_all("DVC remote on S3")
    p.git("push", "-q", "origin", "main")


@pytest.fixture
def counted(project, tmp_path, monkeypatch):
    """The reference project whose live release's tree names an S3 remote served by a counting
    server; (project, log of object GETs)."""
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    log = tmp_path / "s3-gets.log"
    with counting_s3(log) as endpoint:
        make_bucket(endpoint, "nodes")
        use_s3(project, endpoint, "nodes")
        tag = project.release_code_change("on s3")
        project.ok("promote", tag, "--env", "production", "--approver", "ci", "--reason", "test",
                   "--skip-staging", "test", "--allow-regression", "test", "--push")
        log.unlink(missing_ok=True)  # what the release and push read is not a deploy's
        yield project, log


def start_deploy(p: Project, target: Path, cache: Path | None) -> subprocess.Popen:
    args = [sys.executable, "-m", "tether.cli", "deploy", "--env", "production", "--target", str(target),
            "--repo", str(p.origin)] + (["--node-cache", str(cache)] if cache else [])
    return subprocess.Popen(args, cwd=p.base, env=p.env(CREDENTIALS), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"deploy exited {proc.returncode}:\n{out}\n{err}"


def verified(p: Project, target: Path) -> None:
    p.ok("verify", "--target", str(target), cwd=p.base)


def test_three_concurrent_deploys_sharing_a_cache_fetch_each_object_once(counted, tmp_path):
    p, log = counted
    cache = tmp_path / "node-cache"
    procs = [start_deploy(p, tmp_path / f"t{i}", cache) for i in range(3)]
    for proc in procs:
        finish(proc)
    gets, fetched = object_gets(log)
    assert gets and fetched > 0, "the deploys fetched nothing from the remote: the count proves nothing"
    assert {k: n for k, n in gets.items() if n != 1} == {}, gets
    for i in range(3):
        verified(p, tmp_path / f"t{i}")
        weights = sorted((tmp_path / f"t{i}" / "current").resolve().rglob("model.skops"))
        assert weights
        for w in weights:  # a hard link into the node cache, on one file system
            assert os.stat(w).st_nlink >= 4  # the cache entry and three targets
    # without the cache, one more target fetches its objects again: the counter sees it
    finish(start_deploy(p, tmp_path / "alone", None))
    again, _ = object_gets(log)
    assert any(again[k] == 2 for k in gets), again
    verified(p, tmp_path / "alone")


def test_a_damaged_cache_entry_is_moved_aside_and_fetched_again(counted, tmp_path):
    p, log = counted
    cache = tmp_path / "node-cache"
    finish(start_deploy(p, tmp_path / "t0", cache))
    objects = sorted(q for q in (cache / "files" / "md5").rglob("*") if q.is_file())
    victim = max(objects, key=lambda q: q.stat().st_size)  # the weights, not a listing
    md5 = victim.parent.name + victim.name
    bad = victim.with_name("bad")
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    os.replace(bad, victim)  # the entry, not t0's copy (a hard link keeps the old inode)
    finish(start_deploy(p, tmp_path / "t1", cache))
    verified(p, tmp_path / "t1")
    verified(p, tmp_path / "t0")
    assert hashlib.md5(victim.read_bytes()).hexdigest() == md5
    assert [q.name.split(".")[0] for q in (cache / "damaged").iterdir()] == [md5]
    gets, _ = object_gets(log)
    assert gets[f"/nodes/dvcstore/files/md5/{md5[:2]}/{md5[2:]}"] == 2


SLOW_FETCH = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {src!r})
    from tether.adapters.nodecache import NodeCache

    class Slow:
        def __init__(self, data): self.data, self.at = data, 0
        def close(self): pass
        def readinto(self, buf):
            time.sleep(0.05)
            n = min(len(buf), 65536, len(self.data) - self.at)
            buf[:n] = self.data[self.at:self.at + n]
            self.at += n
            return n

    NodeCache({cache!r}).get({md5!r}, lambda: Slow(open({payload!r}, "rb").read()))
""")


def test_kill_9_while_fetching_leaves_no_half_object(tmp_path):
    from tether.adapters.nodecache import NodeCache

    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(4 << 20))
    md5 = hashlib.md5(payload.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    code = SLOW_FETCH.format(src=str(SRC), cache=str(cache), md5=md5, payload=str(payload))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        until(lambda: any(q.stat().st_size > 0 for q in (cache / "tmp").glob(f"{md5}.*"))
              if (cache / "tmp").exists() else False, "a fetch under way", timeout=30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    node = NodeCache(cache)
    assert not node.path(md5).exists(), "a half-written object was published"
    assert list((cache / "tmp").glob(f"{md5}.*")), "the kill came too late to test anything"
    # the dead writer's lock is gone with it; the next get fetches the whole object, verified
    got = node.get(md5, lambda: open(payload, "rb"))
    assert got.read_bytes() == payload.read_bytes()
    assert list((cache / "tmp").glob(f"{md5}.*")) == []


def test_a_corrupt_remote_object_is_never_published(tmp_path):
    from tether.adapters.nodecache import NodeCache
    from tether.errors import IntegrityError

    payload = tmp_path / "payload"
    payload.write_bytes(b"not what the name says")
    node = NodeCache(tmp_path / "cache")
    with pytest.raises(IntegrityError):
        node.get("0" * 32, lambda: open(payload, "rb"))
    assert not node.path("0" * 32).exists() and list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_kserve_init_pods_on_one_node_share_the_cache(counted, tmp_path):
    """TETHER_NODE_CACHE in the pods' environment (a hostPath): two storage initializers, one fetch."""
    p, log = counted
    env = {**CREDENTIALS, "TETHER_NODE_CACHE": str(tmp_path / "node-cache")}
    for pod in ("a", "b"):
        dest = tmp_path / pod / "mnt" / "models"
        res = p.sh(sys.executable, "-m", "tether.cli", "kserve-init", f"tether://{p.origin}#production", str(dest),
                   cwd=p.base, check=False, env=env)
        assert res.code == 0, res.err
        assert (dest / "tether-resolved.json").is_file()
    gets, fetched = object_gets(log)
    assert gets and fetched > 0
    assert {k: n for k, n in gets.items() if n != 1} == {}, gets
