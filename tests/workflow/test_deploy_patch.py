"""A patch deploy costs what changed (issue 34): the git processes a deploy from the repository
starts, each question asked once; and nothing kept under .git/tether steers it (no kept parse
of dvc.yaml or of tag names: a file there is anybody's to write)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from project import promote_to, threshold_release

from tether.adapters.gitrepo import Git
from tether.adapters.narrowfetch import head_log
from tether.core.moves import RELEASE
from tether.deploy.command import deploy
from tether.errors import UsageError

WEIGHTS = "models/fraud-detector/model.skops"


def _git_processes(monkeypatch) -> list[list[str]]:
    """Every child process started from now on, as its argument list."""
    started: list[list[str]] = []
    real = subprocess.Popen.__init__

    def record(self, args, *a, **kw):
        started.append([str(x) for x in args])
        real(self, args, *a, **kw)

    monkeypatch.setattr(subprocess.Popen, "__init__", record)
    return started


def _verb(args: list[str]) -> str:
    """git's subcommand in `git [-c KEY=VALUE]… [--option]… VERB …`."""
    i = 1
    while args[i].startswith("-"):
        i += 2 if args[i] == "-c" else 1
    return args[i]


def test_a_patch_deploy_asks_git_each_question_once(project_live, tmp_path, monkeypatch):
    p, target = project_live, tmp_path / "serving"
    assert deploy(target, "production", cwd=p.root).outcome == "deployed"
    patch = threshold_release(p, 0.35)  # the same weights, a new threshold
    promote_to(p, patch)
    started = _git_processes(monkeypatch)
    res = deploy(target, "production", cwd=p.root)
    assert (res.outcome, res.release) == ("deployed", patch)
    old, new = target / "releases/fraud-detector@v1.0.0", target / "releases" / patch
    assert os.path.samefile(old / WEIGHTS, new / WEIGHTS)  # linked, not copied
    assert all(args[0] == "git" for args in started), started  # no DVC, no other tool
    verbs = [_verb(args) for args in started]
    assert verbs.count("rev-parse") == 1 and "--show-toplevel" in started[0], started  # the root, once; the
    # environment's moves are read once, before the tag fetch (their head names the tag), and the registry takes them
    assert verbs.count("log") == 2 and verbs.count("for-each-ref") == 1, started  # the moves, their signatures
    assert "cat-file" not in verbs, started  # the release's tag message came with the one read of the refs
    assert len(started) == 8, started  # 12 before issue 34
    # the same deploy again is a no-op that still checks origin and the release
    started.clear()
    assert deploy(target, "production", cwd=p.root).outcome == "noop"
    assert sum("fetch" in args for args in started) == 2, started


def test_head_log_reads_the_moves_once_for_the_tag_fetch_and_the_registry(tmp_path):
    r = tmp_path / "r"
    r.mkdir()
    git = Git(r)
    git.run("init", "-q", "-b", "main")
    (r / "f").write_text("1")
    git.run("add", "f")
    git.run("commit", "-q", "-m", "a move\n\nTether-Release: m@v1.2.3\nTether-Approver: ops")
    moved = git.out("rev-parse", "HEAD")
    git.run("commit", "-q", "--allow-empty", "-m", "by hand")
    log = head_log(git, "refs/heads/main")
    assert [e.commit for e in log] == [git.out("rev-parse", "HEAD"), moved]
    assert log == git.log_first_parent("HEAD")  # what Registry.events_at would read itself
    assert RELEASE not in log[0].trailers and log[1].trailers[RELEASE] == "m@v1.2.3"
    assert head_log(git, "refs/heads/nothing") == []
    assert head_log(git, "refs/remotes/origin/main") == []


def test_the_one_read_of_the_refs_brings_the_message_of_the_one_tag_asked_for(tmp_path):
    r = tmp_path / "r"
    r.mkdir()
    git = Git(r)
    git.run("init", "-q", "-b", "main")
    git.run("commit", "-q", "--allow-empty", "-m", "c")
    text = "release m 1.0.0\n\n{\"model\": \"m\"}\n"
    for tag in ("m@v1.0.0", "m@v1.1.0", "odd)%(refname)"):
        git.run("tag", "-a", tag, "-m", text + tag)
    git.run("tag", "light@v1.0.0")
    plain = {x.name: x for x in git.for_each_ref("refs/tags/", messages=False)}
    asked = {x.name: x for x in git.for_each_ref("refs/tags/", messages=False, message_of="refs/tags/m@v1.1.0")}
    want = asked.pop("refs/tags/m@v1.1.0")
    assert want.whole and want.message == git.tag_message(want.objectname) == text + "m@v1.1.0\n"
    assert asked == {k: v for k, v in plain.items() if k != "refs/tags/m@v1.1.0"}  # the others: as without it
    assert not any(x.whole or x.message for x in asked.values())
    odd = git.for_each_ref("refs/tags/", messages=False, message_of="refs/tags/odd)%(refname)")
    assert not any(x.whole or x.message for x in odd)  # a name git's format cannot quote: no message, read later
    light = git.for_each_ref("refs/tags/", messages=False, message_of="refs/tags/light@v1.0.0")
    assert not any(x.whole or x.message for x in light)  # a lightweight tag has no message


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_deploy_reads_nothing_kept_under_git_tether_and_keeps_nothing_there(project_live, tmp_path):
    """A parse kept under .git/tether would be a hand-writable file steering what is deployed:
    deploy parses dvc.yaml and tag names afresh. Poisoned views of every kind a read command keeps
    change nothing, and deploy writes none."""
    p, target = project_live, tmp_path / "serving"
    p.ok("list")  # a read command keeps its views
    kept = p.root / ".git/tether"
    for folder in [kept / "views" / "yaml", *(d for d in (kept / "views").iterdir() if d.is_dir())]:
        folder.mkdir(parents=True, exist_ok=True)
        for f in list(folder.iterdir()) or [folder / "forged.json"]:
            f.write_text('{"artifacts": {"fraud-detector": {"path": "src", "type": "model"}}}')
    before = _tree(kept)
    res = deploy(target, "production", cwd=p.root)
    assert (res.outcome, res.release) == ("deployed", "fraud-detector@v1.0.0")
    assert (target / "releases/fraud-detector@v1.0.0" / WEIGHTS).is_file()
    assert _tree(kept) == before
    assert p.tether("verify", "--target", str(target)).code == 0


def test_empty_policies_load_no_parser_and_a_bad_one_is_still_refused(tmp_path):
    probe = ("import sys\nfrom tether.core.settings import Settings\n"
             "Settings.from_meta({'tether': {'signing': {}, 'events': {}, 'attestation': {}}})\n"
             "print(sorted(m for m in ('tether.core.signpolicy', 'tether.core.cloudevents', 'tether.core.attestation',"
             " 'tether.core.guard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
    from tether.core.settings import Settings

    for bad in ({"signing": {"nope": 1}}, {"events": {"urls": "x"}}, {"attestation": {"key": "/abs"}},
                {"guard": {"steps": [10, 50]}}):
        with pytest.raises(UsageError):
            Settings.from_meta({"tether": bad})


@pytest.mark.parametrize("trailer", ["*", "m@*", "m@v1.0.0:refs/heads/evil", "other@v1.0.0", "m@v01.0.0"])
def test_a_hand_written_release_trailer_never_becomes_a_refspec(tmp_path, trailer):
    """The head's Tether-Release trailer names the one tag to fetch; a trailer is anybody's to
    write, so a glob, a second colon, another model's tag or an unusual spelling is not fetched
    as written (with force, `+refs/tags/*` would overwrite every local tag): the fetch falls back
    to this model's release tags, and our diverging tag of another model stays as it was."""
    from tether.adapters.narrowfetch import fetch_release_tags

    origin, here = tmp_path / "origin", tmp_path / "here"
    subprocess.run(["git", "init", "-q", "-b", "main", str(origin)], check=True)
    o = Git(origin)
    (origin / "f").write_text("1")
    o.run("add", "f")
    o.run("commit", "-q", "-m", "one")
    for tag in ("m@v1.0.0", "other@v1.0.0"):
        o.run("tag", "-a", "-m", tag, tag)
    subprocess.run(["git", "clone", "-q", "--no-tags", str(origin), str(here)], check=True)
    h = Git(here)
    h.run("commit", "-q", "--allow-empty", "-m", "ours")
    h.run("tag", "-a", "-m", "ours, not origin's", "other@v1.0.0")  # a local tag that differs from origin's
    ours = h.out("rev-parse", "other@v1.0.0")
    o.run("commit", "-q", "--allow-empty", "-m", f"a move\n\nTether-Release: {trailer}")
    fetch_release_tags(h, str(origin), None, "m", force=True, tag=trailer)
    assert h.out("rev-parse", "other@v1.0.0") == ours  # not clobbered by a forced glob
    assert h.out("tag", "--list").split() == ["m@v1.0.0", "other@v1.0.0"]
    assert "evil" not in h.out("for-each-ref", "refs/heads")
