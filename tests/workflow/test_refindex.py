"""The ref index (tether.adapters.refindex) and the read views kept under it: whatever the index holds,
a read answers what git says now. Facts are keyed by object id, names by the name, logs by the
tip they were read at, views by the digest of every input; a damaged or edited file is ignored."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from shapes import build_churn, retrain_churn

from tether.adapters.gitrepo import Git
from tether.adapters.refindex import PATTERNS, RefIndex
from tether.core.refs import parse_tag
from tether.registry.release import decode_name, encode_name


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(list(args), cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """No DVC at all: a plain repository with every kind of ref the registry reads."""
    r = tmp_path / "r"
    r.mkdir()
    sh(r, "git", "init", "-q", "-b", "main")
    for i in range(6):
        (r / "f.txt").write_text(f"{i}\n")
        sh(r, "git", "add", "f.txt")
        sh(r, "git", "commit", "-q", "-m", f"commit {i}\n\nbody {i}")
        sh(r, "git", "tag", "-a", f"m@v1.{i}.0", "-m", f"release {i}\n\nsecond line")
    sh(r, "git", "tag", "light@v0.1.0", "HEAD~2")  # lightweight
    sh(r, "git", "tag", "-a", "m#prod#1", "-m", "Assigning stage prod", "HEAD~1")  # GTO's assignment
    sh(r, "git", "tag", "-a", "not-a-release", "-m", "x")
    sh(r, "git", "branch", "production", "HEAD~3")
    return r


def truth(git: Git) -> set:
    return {tuple(vars(x).values()) for x in git.for_each_ref(*PATTERNS, messages=False, first_line=True)}


def indexed(git: Git) -> set:
    return {tuple(vars(x).values()) for x in RefIndex(git).records(*PATTERNS)}


def test_records_are_gits_own_reading_through_every_kind_of_ref_change(repo, monkeypatch):
    git = Git(repo)
    assert indexed(git) == truth(git)
    # warm: nothing is peeled again, the answer comes from the index
    real = Git.for_each_ref
    monkeypatch.setattr(Git, "for_each_ref", lambda *a, **k: pytest.fail("warm read peeled the refs again"))
    assert indexed(git) == {tuple(vars(x).values()) for x in real(git, *PATTERNS, messages=False, first_line=True)}
    monkeypatch.setattr(Git, "for_each_ref", real)
    changes = [
        ("git", "tag", "-a", "m@v2.0.0", "-m", "new"),  # a new annotated tag
        ("git", "tag", "-d", "m@v1.0.0"),  # deleted
        ("git", "tag", "-f", "light@v0.1.0", "HEAD"),  # a lightweight tag moved
        ("git", "tag", "-d", "m@v1.1.0"),
        ("git", "tag", "-a", "m@v1.1.0", "-m", "re-made elsewhere", "HEAD~4"),  # re-created: a new object
        ("git", "commit", "-q", "--allow-empty", "-m", "more"),  # a branch moved
        ("git", "branch", "-f", "production", "main"),
    ]
    for change in changes:
        sh(repo, *change)
        assert indexed(git) == truth(git), change


@pytest.mark.parametrize("damage", ["garbage", "flipped", "forged-body", "truncated"])
def test_a_damaged_or_edited_index_is_ignored(repo, damage):
    git = Git(repo)
    RefIndex(git).records(*PATTERNS)
    path = git.common_dir() / "tether" / "refindex.json"
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n")
    data = json.loads(body)
    oid = next(iter(data["objects"]))
    if damage == "garbage":
        path.write_bytes(b"\x00not json")
    elif damage == "flipped":
        path.write_bytes(head + b"\n" + body.replace(b'"tag"', b'"commit"', 1))
    elif damage == "forged-body":  # a hand edit that keeps the old header: the checksum no longer fits
        data["objects"][oid][1] = "0" * 40
        path.write_bytes(head + b"\n" + json.dumps(data).encode())
    else:
        path.write_bytes(raw[: len(raw) // 2])
    assert indexed(git) == truth(git)


def log(git: Git, tip: str) -> list:
    return [vars(e) for e in git.log_first_parent(tip)]


def test_a_branch_log_is_extended_from_its_last_tip_and_read_whole_after_a_rewrite(repo):
    git = Git(repo)

    def via_index() -> list:
        tip = git.rev_parse("production")
        return [vars(e) for e in RefIndex(git).first_parent_log("production", tip)]

    assert via_index() == log(git, "production")
    sh(repo, "git", "checkout", "-q", "production")
    for i in range(3):  # moves on top: the kept log is extended
        sh(repo, "git", "commit", "-q", "--allow-empty", "-m", f"move {i}\n\nTether-Action: promote")
        assert via_index() == log(git, "production")
    sh(repo, "git", "reset", "-q", "--hard", "HEAD~2")  # the branch rewritten under the kept tip
    sh(repo, "git", "commit", "-q", "--allow-empty", "-m", "another move")
    assert via_index() == log(git, "production")
    sh(repo, "git", "reset", "-q", "--hard", "HEAD~2")  # moved backwards: the kept tip is ahead of it
    assert via_index() == log(git, "production")


NAMES = ["m@v1.2.3", "m@v1.2.3-rc.1", "m@v1.2.3-rc.1+build.5", "dir/sub_model@v0.0.1", "m@v01.2.3", "m@1.2.3",
         "m@v1.2", "m#prod#3", "m@v1١.0.0", "not-a-release", "M_odel@v10.20.30-alpha.beta+exp.sha.5114f85"]


def test_kept_parses_of_tag_names_equal_a_fresh_parse(repo):
    git = Git(repo)
    first = RefIndex(git)
    fresh = [first.parsed("release", n, parse_tag, encode_name, decode_name) for n in NAMES]
    first.save()
    again = RefIndex(git)
    kept = [again.parsed("release", n, lambda n: pytest.fail(f"{n} parsed again"), encode_name, decode_name)
            for n in NAMES]
    assert kept == fresh == [parse_tag(n) for n in NAMES]
    assert [str(x) if x else None for x in kept][:3] == ["m@v1.2.3", "m@v1.2.3-rc.1", "m@v1.2.3-rc.1+build.5"]


# -- the views: a kept answer is only ever the answer for the same inputs ----------------------
READS = (("list",), ("status",), ("history",), ("show", "churn@latest"))


def answers(p) -> dict:
    return {r: p.ok(*r, "--json").out for r in READS}


def test_kept_views_follow_every_change_of_refs_settings_and_signers(tmp_path):
    """A model kept with `dvc add` (no training stage), released with plain `git tag` as well."""
    p = build_churn(tmp_path / "churn")
    p.ok("release", "--push")
    first = answers(p)
    views = p.root / ".git/tether/views"
    assert sorted(f.name for f in views.iterdir()) == ["history", "list", "show", "status"]
    assert all(len(list((views / v).iterdir())) == 1 for v in ("history", "list", "show", "status"))
    assert answers(p) == first  # answered from the kept views

    retrain_churn(p, 2)  # a new release made by hand, with plain git
    p.git("tag", "-a", "churn@v1.1.0", "-m", "by hand")
    rows = p.ok("list", "--json").json()
    assert [r["tag"] for r in rows] == ["churn@v1.1.0", "churn@v1.0.0"]
    assert json.loads(p.ok("show", "churn@latest", "--json").out)["version"] == "1.1.0"

    p.dvc("push", "-q")
    p.git("push", "-q", "origin", "main", "churn@v1.1.0")
    p.ok("promote", "churn@v1.1.0", "--env", "production", "--approver", "a", "--reason", "r",
         "--skip-staging", "test")
    st = p.ok("status", "--json").json()[0]
    assert st["environments"]["production"] == "churn@v1.1.0"
    assert p.ok("history", "--json").json()["environments"]["production"]["events"][0]["release"] == "churn@v1.1.0"

    dvc_yaml = p.root / "dvc.yaml"  # settings change (uncommitted): a new environment
    dvc_yaml.write_text(dvc_yaml.read_text().replace("        smoke: false\n",
                                                     "        smoke: false\n        environments: [qa, production]\n"))
    st = p.ok("status", "--json").json()[0]
    assert set(st["environments"]) == {"qa", "production"}  # staging is gone, qa is new
    assert set(p.ok("history", "--json").json()["environments"]) == {"qa", "production"}

    signers = p.root / ".tether/allowed_signers"  # a new allowed-signers file is another input of history
    before = list(p.ok("history", "--json").json()["environments"]["production"]["events"])
    signers.parent.mkdir(exist_ok=True)
    signers.write_text("nobody@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    kept = set((views / "history").iterdir())
    after = p.ok("history", "--json").json()["environments"]["production"]["events"]
    assert [e["commit"] for e in after] == [e["commit"] for e in before]
    assert set((views / "history").iterdir()) > kept  # computed afresh under a new key, kept beside the old


def test_a_tampered_view_is_ignored(tmp_path):
    p = build_churn(tmp_path / "churn")
    p.ok("release", "--push")
    truth_rows = p.ok("list", "--json").json()
    (path,) = (p.root / ".git/tether/views/list").iterdir()
    head, _, body = path.read_bytes().partition(b"\n")
    forged = body.replace(b"churn@v1.0.0", b"churn@v9.9.9")
    assert forged != body
    path.write_bytes(head + b"\n" + forged)
    assert p.ok("list", "--json").json() == truth_rows


def test_discover_finds_the_common_git_directory_from_a_subdirectory_and_a_linked_worktree(repo, tmp_path):
    """Git.discover learns the common directory (where .git/tether lives) in the same process as
    the top level: from a subdirectory it is the repository's .git, from a linked worktree the
    main repository's, as `git rev-parse --git-common-dir` says at each top level."""
    from tether.adapters import gitrepo

    (repo / "sub/deeper").mkdir(parents=True)
    (repo / "shortcut").symlink_to(repo / "sub/deeper")  # `..` from here is not `..` on disk
    sh(repo, "git", "worktree", "add", "-q", str(tmp_path / "wt"), "HEAD")
    for where, top in ((repo / "sub/deeper", repo), (repo / "shortcut", repo), (tmp_path / "wt", tmp_path / "wt")):
        gitrepo._COMMON_DIRS.clear()
        git = Git.discover(where)
        assert git.root.resolve() == top.resolve()
        found = git.common_dir()
        gitrepo._COMMON_DIRS.clear()
        assert found.resolve() == Git(top).common_dir().resolve() == (repo / ".git").resolve()
