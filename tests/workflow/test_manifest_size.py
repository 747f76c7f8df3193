"""The manifest stays small whatever the dataset (issue "manifest size").

A directory output is one line in the manifest: its DVC `.dir` md5 (the listing, stored out of
line as a DVC object, fetched only by the commands that move bytes) and a tree sha256 over every
file in it. These tests release a data directory of 10,000 files and prove that the tag message
stays under the bound while `verify` still proves every single file.
"""

from __future__ import annotations

import json

import pytest
from shapes import build_textclf, listing, lock_outputs, object_path

from tether.core.manifest import MAX_ATTESTED

FILES = 10_000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    p = build_textclf(tmp_path_factory.mktemp("big") / "p", raw_files=FILES)
    tag = p.ok("release", "--push", "--json").json()["tag"]
    return p, tag


def test_a_10000_file_directory_output_keeps_the_tag_message_under_the_bound(big):
    p, tag = big
    raw = json.loads(p.git("for-each-ref", "--format=%(contents)", f"refs/tags/{tag}").split("\n", 2)[2])
    message = p.git("cat-file", "tag", tag)
    assert len(message.encode()) <= MAX_ATTESTED, len(message.encode())
    data = {e["path"]: e for e in raw["components"]["data"]}
    assert data["data/raw"]["md5"].endswith(".dir") and len(data["data/raw"]["sha256"]) == 64
    # the per-file listing lives out of line, addressed by the md5 the manifest names
    assert len(listing(p.root / ".dvc" / "cache", data["data/raw"]["md5"])) == FILES
    assert lock_outputs(p.root)["data/raw"] == data["data/raw"]["md5"]
    # list reads it like any other release
    rows = p.ok("list", "--json").json()
    assert [r["tag"] for r in rows] == [tag] and rows[0]["complete"], rows


def test_verify_proves_every_file_of_the_directory_and_names_a_bad_one(big):
    p, tag = big
    res = p.ok("verify", tag, "--json").json()
    assert res["ok"] and res["files"] >= FILES, res

    # one file among 10,000, replaced in the cache and on the remote, is found and named
    md5 = lock_outputs(p.root)["data/raw"]
    victim = sorted(listing(p.root / ".dvc" / "cache", md5), key=lambda c: c["relpath"])[FILES // 2]
    for where in (p.root / ".dvc" / "cache", p.store):
        obj = object_path(where, victim["md5"])
        obj.chmod(0o644)
        obj.write_text("neg\tforged review\n")
    res = p.tether("verify", tag)
    assert res.code == 6, (res.code, res.err)
    assert f"data/raw/{victim['relpath']}" in res.err, res.err
