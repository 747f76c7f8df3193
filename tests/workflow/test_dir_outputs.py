"""Directory outputs (`<md5>.dir` objects) end to end, with real git, DVC and a real remote.

A `.dir` object is only a listing of the files inside; pushing, fetching or checking it alone
moves or proves nothing. These tests release a project whose every DVC output is a directory
into an EMPTY remote and check that each file inside travels, is checked and comes back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from project import BIN
from s3server import _client_kwargs, delete_objects
from shapes import DIR_OUTPUTS, build_textclf, clone, listing, lock_outputs, object_path

from tether.adapters.dvcstore import DvcStore
from tether.errors import IntegrityError


def dvc_bin() -> str:
    return os.path.join(BIN, "dvc")


def released(p) -> str:
    res = p.ok("release", "--push", "--json")
    return res.json()["tag"]


def dir_objects(p) -> dict[str, str]:
    """{path: .dir md5} of every directory output, as dvc.lock / data/raw.dvc record them."""
    outs = lock_outputs(p.root)
    assert set(outs) == set(DIR_OUTPUTS), outs
    return outs


def children(p, md5: str) -> list[dict]:
    entries = listing(p.root / ".dvc" / "cache", md5)
    assert entries, f"{md5} lists no files"
    return entries


def assert_restored(p, other: Path) -> None:
    """Every file of every directory output in `other` is byte-identical to the workspace's."""
    for path, md5 in dir_objects(p).items():
        want = {c["relpath"]: (p.root / path / c["relpath"]).read_bytes() for c in children(p, md5)}
        have = {f.relative_to(other / path).as_posix(): f.read_bytes()
                for f in (other / path).rglob("*") if f.is_file()}
        assert have == want, path


def test_release_push_sends_every_file_of_every_directory_output(tmp_path):
    p = build_textclf(tmp_path / "p")
    assert not any(p.store.rglob("*.dir")) and not any(f.is_file() for f in p.store.rglob("*"))
    tag = released(p)

    outs = dir_objects(p)
    total = 0
    for path, md5 in outs.items():
        assert object_path(p.store, md5).is_file(), f"{path}: listing {md5} not on the remote"
        for c in children(p, md5):
            assert object_path(p.store, c["md5"]).is_file(), f"{path}/{c['relpath']} not on the remote"
            total += 1
    assert total >= 10
    assert p.ok("check", "--json").json()["ok"]

    # Another machine: git clone, check out the tag, dvc pull, and every byte is back.
    other = clone(p, tmp_path / "other", rev=tag)
    p.sh(dvc_bin(), "pull", "-q", cwd=other)
    assert_restored(p, other)
    assert (other / "models/textclf/threshold.json").read_text() == (p.root / "models/textclf/threshold.json").read_text()


def test_a_file_missing_inside_a_directory_output_is_found(tmp_path):
    p = build_textclf(tmp_path / "p")
    tag = released(p)
    p.ok("promote", tag, "--env", "staging", "--approver", "a", "--reason", "r", "--push")
    model = dir_objects(p)["models/textclf"]
    victim = next(c for c in children(p, model) if c["relpath"] == "model.pkl")
    object_path(p.store, victim["md5"]).unlink()
    assert object_path(p.store, model).is_file()  # the listing itself is still there

    res = p.tether("check")
    assert res.code == 7, (res.out, res.err)
    assert "models/textclf" in res.out + res.err
    # a serving host with an empty cache refuses, and its target stays as it was
    host = clone(p, tmp_path / "host")
    target = tmp_path / "serving"
    res = p.tether("deploy", "--env", "staging", "--target", str(target), cwd=host)
    assert res.code == 7 and "models/textclf" in res.err, res.err
    assert not (target / "current").exists()
    assert not [r for r in (target / "releases").iterdir()] if (target / "releases").exists() else True

    store = DvcStore(p.root)
    try:
        assert store.missing_on_remote(dir_objects(p).values()) == {model}
        # With the listing only on the remote (an empty local cache), the same answer.
        other = clone(p, tmp_path / "other")
        fresh = DvcStore(other)
        try:
            assert fresh.missing_on_remote({model}) == {model}
            assert fresh.missing_on_remote({dir_objects(p)["data/features"]}) == set()
        finally:
            fresh.close()
        # Pushing again repairs the remote.
        store.push({model})
        assert object_path(p.store, victim["md5"]).is_file()
        assert store.missing_on_remote(dir_objects(p).values()) == set()
    finally:
        store.close()
    assert p.tether("check").code == 0


def test_push_fails_when_the_cache_lacks_a_directory_listing(tmp_path):
    p = build_textclf(tmp_path / "p")
    model = dir_objects(p)["models/textclf"]
    path = p.root / ".dvc/cache/files/md5" / model[:2] / model[2:]
    path.chmod(0o644)
    path.unlink()
    store = DvcStore(p.root)
    try:
        from tether.errors import StorageError

        with pytest.raises(StorageError, match=model):
            store.push({model})
    finally:
        store.close()


def test_fetch_brings_every_file_of_a_directory_into_an_empty_cache(tmp_path):
    p = build_textclf(tmp_path / "p")
    tag = released(p)
    outs = dir_objects(p)
    other = clone(p, tmp_path / "other", rev=tag)
    cache = other / ".dvc" / "cache"
    assert not cache.exists() or not any(f.is_file() for f in cache.rglob("*"))

    store = DvcStore(other)
    try:
        wanted = {outs["models/textclf"], outs["data/features"]}
        assert store.missing_in_cache(wanted) == wanted
        assert store.missing_on_remote(wanted) == set()  # listings read from the remote
        store.fetch(wanted)
        assert store.missing_in_cache(wanted) == set()
        for path in ("models/textclf", "data/features"):
            for c in store.dir_entries(outs[path]):
                assert store.cache_path(c["md5"]).read_bytes() == (p.root / path / c["relpath"]).read_bytes()

        # A listing in the cache without one of its files counts as missing and is repaired.
        model = outs["models/textclf"]
        lost = store.cache_path(store.dir_entries(model)[0]["md5"])
        lost.chmod(0o644)
        lost.unlink()
        assert store.missing_in_cache({model}) == {model}
        store.fetch({model})
        assert lost.is_file() and store.missing_in_cache({model}) == set()
    finally:
        store.close()

    # DVC itself restores the directories from that cache, without the remote.
    p.sh(dvc_bin(), "checkout", "-q", "models/textclf", "data/features", cwd=other)
    assert (other / "models/textclf/model.pkl").read_bytes() == (p.root / "models/textclf/model.pkl").read_bytes()


def test_push_round_trip_through_s3(tmp_path, s3_remote):
    import boto3

    p = build_textclf(tmp_path / "p", s3=s3_remote)
    s3 = boto3.client("s3", endpoint_url=s3_remote["endpoint"], **_client_kwargs())
    assert not s3.list_objects_v2(Bucket=s3_remote["bucket"]).get("Contents")
    tag = released(p)

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_remote["bucket"]).get("Contents", [])}

    def key(md5: str) -> str:
        return f"dvcstore/files/md5/{md5[:2]}/{md5[2:]}"

    outs = dir_objects(p)
    for path, md5 in outs.items():
        assert key(md5) in keys, path
        for c in children(p, md5):
            assert key(c["md5"]) in keys, f"{path}/{c['relpath']}"

    other = clone(p, tmp_path / "other", rev=tag)  # the S3 remote is in the committed .dvc/config
    p.sh(dvc_bin(), "pull", "-q", cwd=other)
    assert_restored(p, other)

    p.ok("promote", tag, "--env", "staging", "--approver", "a", "--reason", "r", "--push")
    victim = next(c for c in children(p, outs["models/textclf"]) if c["relpath"] == "model.pkl")
    delete_objects(s3_remote["endpoint"], s3_remote["bucket"], key(victim["md5"]))
    res = p.tether("check")
    assert res.code == 7 and "models/textclf" in res.out + res.err, (res.out, res.err)
    target = tmp_path / "serving"
    res = p.tether("deploy", "--env", "staging", "--target", str(target), "--repo", str(p.origin))
    assert res.code == 7 and "models/textclf" in res.err, res.err
    assert not (target / "current").exists()


# -- malformed listings -------------------------------------------------------------------------
GOOD = "0" * 32


def plant(store_root: Path, raw: bytes) -> str:
    """A `.dir` object named by the md5 of its bytes (so only its content is wrong)."""
    md5 = hashlib.md5(raw).hexdigest() + ".dir"
    path = object_path(store_root, md5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return md5


@pytest.mark.parametrize("raw", [
    b"not json {",
    b'{"md5": "x"}',
    b'["a.txt"]',
    b'[{"relpath": "a.txt"}]',
    json.dumps([{"md5": GOOD, "relpath": "../x"}]).encode(),
    json.dumps([{"md5": GOOD, "relpath": "a/../../x"}]).encode(),
    json.dumps([{"md5": GOOD, "relpath": "/etc/passwd"}]).encode(),
    json.dumps([{"md5": "../../../../etc/passwd", "relpath": "a.txt"}]).encode(),
], ids=["not-json", "not-a-list", "not-objects", "no-md5", "dotdot", "inner-dotdot", "absolute", "md5-path"])
def test_a_malformed_listing_is_an_integrity_error(tmp_path, raw):
    store = DvcStore(tmp_path)  # a cache path needs no DVC repository
    md5 = plant(tmp_path / ".dvc" / "cache", raw)
    with pytest.raises(IntegrityError, match="malformed"):
        store.dir_entries(md5)
    assert IntegrityError.exit_code == 6


def test_a_listing_that_does_not_hash_to_its_name_is_an_integrity_error(tmp_path):
    store = DvcStore(tmp_path)
    md5 = plant(tmp_path / ".dvc" / "cache", json.dumps([{"md5": GOOD, "relpath": "a.txt"}]).encode())
    assert store.dir_entries(md5) == [{"md5": GOOD, "relpath": "a.txt"}]
    object_path(tmp_path / ".dvc" / "cache", md5).write_text(json.dumps([{"md5": GOOD, "relpath": "b.txt"}]))
    with pytest.raises(IntegrityError, match="hash"):
        store.dir_entries(md5)


def test_malformed_listings_on_the_remote_are_refused(tmp_path):
    p = build_textclf(tmp_path / "p")
    bad = plant(p.store, json.dumps([{"md5": GOOD, "relpath": "../escape"}]).encode())
    other = clone(p, tmp_path / "other")
    store = DvcStore(other)
    try:
        with pytest.raises(IntegrityError, match="unsafe relpath"):
            store.missing_on_remote({bad})
        with pytest.raises(IntegrityError, match="unsafe relpath"):
            store.fetch({bad})
        assert not store.cache_path(bad).exists()  # never entered the cache
    finally:
        store.close()
    # and a push of a malformed listing from the local cache is refused too
    local = plant(p.root / ".dvc" / "cache", b"[not json")
    store = DvcStore(p.root)
    try:
        with pytest.raises(IntegrityError):
            store.push({local})
    finally:
        store.close()
