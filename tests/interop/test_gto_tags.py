"""tether.gto against GTO itself: its grammar (cross-checked with gto.tag.parse_name), the tags
the real `gto` CLI writes, and `gto show` / `gto history` reading tags tether writes with git."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tether.core.gto import (
    GtoTag,
    TagRecord,
    assignment_message,
    assignment_time,
    deprecation_message,
    deregistration_message,
    is_deprecated,
    is_gto_model,
    is_gto_name,
    next_assignment_tag,
    next_number,
    next_unassignment_tag,
    parse_gto_tag,
    registration_message,
    registration_tag,
    stage_state,
    unassignment_message,
)

gto_tag_mod = pytest.importorskip("gto.tag")
GTO = shutil.which("gto", path=str(Path(sys.executable).parent)) or shutil.which("gto")


# --- grammar -------------------------------------------------------------------------------
VALID = [
    # name, model, action, version, stage, number
    ("churn@v1.0.0", "churn", "register", "v1.0.0", None, None),
    ("fraud-detector@v1.10.0", "fraud-detector", "register", "v1.10.0", None, None),
    ("m@v1.0.0-rc.1+build.7", "m", "register", "v1.0.0-rc.1+build.7", None, None),
    ("other@v0.0.1#1", "other", "register", "v0.0.1", None, 1),
    ("churn@v2.0.0!", "churn", "deregister", "v2.0.0", None, None),
    ("churn@v2.0.0!#4", "churn", "deregister", "v2.0.0", None, 4),
    ("churn#prod#1", "churn", "assign", None, "prod", 1),
    ("churn#prod", "churn", "assign", None, "prod", None),  # the older / --simple form
    ("churn#prod#01", "churn", "assign", None, "prod", 1),
    ("churn#Prod_EU/x-1#12", "churn", "assign", None, "Prod_EU/x-1", 12),
    ("churn#dev!#3", "churn", "unassign", None, "dev", 3),
    ("churn#dev!", "churn", "unassign", None, "dev", None),
    ("churn@deprecated", "churn", "deprecate", None, None, None),
    ("churn@deprecated#2", "churn", "deprecate", None, None, 2),
    ("Churn_Model@v1.0.0", "Churn_Model", "register", "v1.0.0", None, None),  # uppercase, '_'
    ("a@v0.0.1", "a", "register", "v0.0.1", None, None),  # one character is a name
    ("a--b@v0.0.1", "a--b", "register", "v0.0.1", None, None),
    ("nlp/sentiment#prod#2", "nlp/sentiment", "assign", None, "prod", 2),
    ("dir/sub=Other_M@v0.0.1", "dir/sub:Other_M", "register", "v0.0.1", None, None),
    ("a.b/c=m#prod#5", "a.b/c:m", "assign", None, "prod", 5),
]

INVALID = [
    "churn@1.0.0",  # no v
    "churn@V1.0.0",
    "churn@v01.0.0",
    "churn@v1.0",
    "churn@latest",
    "churn@created",  # matched by GTO's regex, but GTO cannot index it (KeyError 'action')
    "churn@created#3",
    "churn@deprecated!",
    "churn#prod!!",
    "churn#prod#",
    "churn#prod#x",
    "churn#prod#1#2",
    "churn#",
    "churn#prod.eu",  # '.' is not allowed in a GTO name
    "churn#-prod",
    "churn#prod-",
    "-churn@v1.0.0",
    "churn-@v1.0.0",
    "ch.urn@v1.0.0",
    "a=b=c@v1.0.0",
    "a:b@v1.0.0",  # in tags the folder separator is '='
    "churn",
    "v1.0.0",
    "churn@v1.0.0\n",
    "",
]


@pytest.mark.parametrize("name,model,action,version,stage,number", VALID)
def test_valid_gto_tags(name, model, action, version, stage, number):
    assert parse_gto_tag(name) == GtoTag(name, model, action, version, stage, number)
    # GTO's own parser agrees
    theirs = gto_tag_mod.parse_name(name)
    assert theirs["name"] == model
    assert theirs["action"].value == action
    assert theirs.get("version") == version
    assert theirs.get("stage") == stage
    assert theirs.get("counter") == number


@pytest.mark.parametrize("name", INVALID)
def test_invalid_gto_tags(name):
    assert parse_gto_tag(name) is None
    if name.endswith("\n"):
        return  # GTO's '$' tolerates a final newline; git ref names cannot contain one
    theirs = gto_tag_mod.parse_name(name, raise_on_fail=False)
    assert "action" not in theirs  # {} or, for @created, a parse GTO itself cannot use


@pytest.mark.parametrize(
    "value,ok",
    [("prod", True), ("Prod", True), ("p", True), ("pre-prod", True), ("eu/prod_1", True),
     ("prod.eu", False), ("prod-", False), ("_prod", False), ("", False), ("pr od", False)],
)
def test_stage_names(value, ok):
    from gto.constants import check_string_is_valid

    assert is_gto_name(value) is ok
    assert check_string_is_valid(value) is ok


@pytest.mark.parametrize("value,ok", [("churn", True), ("dir/sub:m", True), ("a.b:m", True),
                                      ("dir:sub:m", False), ("m:", False), (":m", False)])
def test_model_names(value, ok):
    from gto.constants import fullname_re

    assert is_gto_model(value) is ok
    assert bool(fullname_re.search(value)) is ok


def test_numbering_is_per_model_across_actions_and_stages():
    tags = ["churn@v1.0.0", "churn#prod#1", "churn#dev!#3", "churn#staging", "other#prod#9",
            "churn@created#4", "churn-x#prod#7", "release-notes"]
    assert next_number("churn", tags) == 5
    assert next_assignment_tag("churn", "prod", tags) == "churn#prod#5"
    assert next_unassignment_tag("churn", "prod", tags) == "churn#prod!#5"
    assert next_assignment_tag("new", "prod", tags) == "new#prod#1"
    assert next_assignment_tag("dir/sub:m", "prod", ["dir/sub=m#dev#2"]) == "dir/sub=m#prod#3"
    assert registration_tag("dir/sub:m", "v1.0.0") == "dir/sub=m@v1.0.0"
    with pytest.raises(ValueError):
        next_assignment_tag("churn", "prod.eu", tags)


def test_state_rules_pure():
    def rec(name, commit, t):
        return TagRecord(parse_gto_tag(name), commit, t)

    regs = [rec("m@v1.0.0", "c1", 100), rec("m@v2.0.0", "c2", 200)]
    assert stage_state(regs, "m") == {}
    promote = regs + [rec("m#prod#1", "c2", 300)]
    assert stage_state(promote, "m") == {"prod": "v2.0.0"}
    rollback = promote + [rec("m#prod#2", "c1", 301)]
    assert stage_state(rollback, "m") == {"prod": "v1.0.0"}
    assert assignment_time(250, rollback, "m") == 302
    assert assignment_time(900, rollback, "m") == 900
    # unassigning the rolled-back-to version lets the earlier assignment show again
    assert stage_state(rollback + [rec("m#prod!#3", "c1", 400)], "m") == {"prod": "v2.0.0"}
    assert stage_state(rollback + [rec("m@v1.0.0!", "c1", 400)], "m") == {"prod": "v2.0.0"}
    assert stage_state([rec("m#prod#1", "c9", 1)], "m") == {"prod": "c9"}
    assert not is_deprecated(rollback, "m")
    assert is_deprecated(rollback + [rec("m@deprecated", "c2", 500)], "m")


# --- the real gto CLI ----------------------------------------------------------------------


def _env(when: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_COMMITTER_DATE", "GIT_AUTHOR_DATE")}
    if when is not None:
        env["GIT_COMMITTER_DATE"] = f"{when} +0000"  # git's raw date format: the tagger date
    return env


def _git(repo: Path, *args: str, when: int | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=_env(when), check=True,
                          capture_output=True, text=True).stdout.strip()


def _gto(repo: Path, *args: str) -> str:
    # never with GIT_COMMITTER_DATE: gto's pygit2 backend refuses it and the dulwich fallback fails
    p = subprocess.run([GTO, *args], cwd=repo, env=_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def _after(second: int) -> None:
    """Wait until the wall clock is past `second`. GTO orders events by their tagger date, in
    whole seconds, and breaks a tie however its sort falls, so a test that reads `gto show` after
    GTO's own tags must not make two of them in one second (tether dates its own tags apart;
    GTO's are dated now)."""
    while time.time() < second + 1:
        time.sleep(0.05)


def _tags(repo: Path) -> set[str]:
    return set(_git(repo, "tag", "-l").splitlines())


def _records(repo: Path) -> list[TagRecord]:
    out = _git(repo, "for-each-ref", "refs/tags",
               "--format=%(refname:strip=2) %(objecttype) %(*objectname) %(taggerdate:unix)"
               " %(*committerdate:unix)")
    recs = []
    for line in out.splitlines():
        name, kind, commit, when, commit_when = line.split(" ")
        tag = parse_gto_tag(name)
        if tag is not None and kind == "tag":  # GTO ignores lightweight tags
            recs.append(TagRecord(tag, commit, int(when), int(commit_when)))
    return recs


def _message(repo: Path, tag: str) -> str:
    return _git(repo, "for-each-ref", f"refs/tags/{tag}", "--format=%(contents)").strip()


def _repo(tmp_path: Path, gto_config: str | None = None, when: int | None = None) -> tuple[Path, str, str]:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    if gto_config is not None:
        (repo / ".gto").write_text(gto_config)
    (repo / "model.txt").write_text("one\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one", when=when)
    c1 = _git(repo, "rev-parse", "HEAD")
    (repo / "model.txt").write_text("two\n")
    _git(repo, "commit", "-qam", "two", when=when)
    return repo, c1, _git(repo, "rev-parse", "HEAD")


def test_every_tag_the_gto_cli_writes_parses(tmp_path):
    repo, c1, c2 = _repo(tmp_path)
    steps = [
        # gto arguments, expected tag, expected GtoTag fields (model, action, version, stage, number), message
        (["register", "churn", c1, "--version", "v1.0.0"], lambda t: "churn@v1.0.0",
         ("churn", "register", "v1.0.0", None, None), registration_message("churn", "v1.0.0")),
        (["register", "churn", c2, "--version", "v2.0.0"], lambda t: "churn@v2.0.0",
         ("churn", "register", "v2.0.0", None, None), registration_message("churn", "v2.0.0")),
        (["assign", "churn", "--version", "v2.0.0", "--stage", "prod"],
         lambda t: next_assignment_tag("churn", "prod", t),
         ("churn", "assign", None, "prod", 1), assignment_message("churn", "v2.0.0", "prod")),
        (["assign", "churn", "--version", "v1.0.0", "--stage", "dev"],
         lambda t: next_assignment_tag("churn", "dev", t),
         ("churn", "assign", None, "dev", 2), assignment_message("churn", "v1.0.0", "dev")),
        (["assign", "churn", "--version", "v1.0.0", "--stage", "prod"],  # rollback
         lambda t: next_assignment_tag("churn", "prod", t),
         ("churn", "assign", None, "prod", 3), assignment_message("churn", "v1.0.0", "prod")),
        (["assign", "churn", "--version", "v2.0.0", "--stage", "staging", "--simple", "true"],
         lambda t: "churn#staging",
         ("churn", "assign", None, "staging", None), assignment_message("churn", "v2.0.0", "staging")),
        (["deprecate", "churn", "v1.0.0", "dev"], lambda t: next_unassignment_tag("churn", "dev", t),
         ("churn", "unassign", None, "dev", 4), unassignment_message("churn", "v1.0.0", "dev")),
        (["deprecate", "churn", "v2.0.0"], lambda t: "churn@v2.0.0!",
         ("churn", "deregister", "v2.0.0", None, None), deregistration_message("churn", "v2.0.0")),
        (["register", "dir/sub:Other_M", c2], lambda t: "dir/sub=Other_M@v0.0.1",
         ("dir/sub:Other_M", "register", "v0.0.1", None, None),
         registration_message("dir/sub:Other_M", "v0.0.1")),
        (["assign", "dir/sub:Other_M", "--version", "v0.0.1", "--stage", "prod"],
         lambda t: next_assignment_tag("dir/sub:Other_M", "prod", t),
         ("dir/sub:Other_M", "assign", None, "prod", 1),
         assignment_message("dir/sub:Other_M", "v0.0.1", "prod")),
        (["register", "other", c1, "--simple", "false"], lambda t: "other@v0.0.1#1",
         ("other", "register", "v0.0.1", None, 1), registration_message("other", "v0.0.1")),
        (["deprecate", "other"], lambda t: "other@deprecated",
         ("other", "deprecate", None, None, None), deprecation_message("other")),
        (["deprecate", "other", "--force"], lambda t: "other@deprecated#2",
         ("other", "deprecate", None, None, 2), deprecation_message("other")),
    ]
    for args, expect_name, fields, message in steps:
        _after(max((r.time for r in _records(repo)), default=0))
        before = _tags(repo)
        expected = expect_name(before)
        _gto(repo, *args)
        created = _tags(repo) - before
        assert created == {expected}, args
        assert parse_gto_tag(expected) == GtoTag(expected, *fields)
        assert _message(repo, expected) == message
    assert all(parse_gto_tag(t) is not None for t in _tags(repo))
    # and our model of GTO's state agrees with `gto show`
    recs = _records(repo)
    shown = json.loads(_gto(repo, "show", "--json"))
    assert shown["churn"]["stage"]["prod"] == stage_state(recs, "churn")["prod"] == "v1.0.0"
    assert "other" not in shown and is_deprecated(recs, "other")


def _assign(repo: Path, model: str, version: str, commit: str, stage: str, now: int | None = None) -> str:
    """What tether does on promote / rollback: one annotated tag, numbered and dated as GTO needs."""
    recs = _records(repo)
    name = next_assignment_tag(model, stage, _tags(repo))
    when = assignment_time(int(time.time()) if now is None else now, recs, model)
    _git(repo, "tag", "-a", name, "-m", assignment_message(model, version, stage), commit, when=when)
    return name


def test_tether_assignments_drive_gto_show_and_rollback(tmp_path):
    repo, c1, c2 = _repo(tmp_path, gto_config="stages: [staging, prod]\n")
    _gto(repo, "register", "churn", c1, "--version", "v1.0.0")
    # tether's own release tag is a GTO registration
    _git(repo, "tag", "-a", registration_tag("churn", "v2.0.0"), "-m",
         registration_message("churn", "v2.0.0"), c2, when=int(time.time()))

    def show():
        return json.loads(_gto(repo, "show", "--json"))["churn"]

    assert show() == {"version": "v2.0.0", "stage": {"staging": None, "prod": None},
                      "registered": True, "active": True}

    t1 = _assign(repo, "churn", "v2.0.0", c2, "prod")
    assert t1 == "churn#prod#1"
    assert show()["stage"] == {"staging": None, "prod": "v2.0.0"}
    assert stage_state(_records(repo), "churn") == {"prod": "v2.0.0"}

    # the rollback, most likely in the same wall-clock second: assignment_time dates it later
    t2 = _assign(repo, "churn", "v1.0.0", c1, "prod")
    assert t2 == "churn#prod#2"
    recs = {r.tag.name: r for r in _records(repo)}
    assert recs[t2].time > recs[t1].time
    assert show()["stage"] == {"staging": None, "prod": "v1.0.0"}
    assert stage_state(list(recs.values()), "churn") == {"prod": "v1.0.0"}
    in_prod = json.loads(_gto(repo, "show", "churn#prod", "--json"))
    assert [v["version"] for v in in_prod] == ["v1.0.0"]

    history = json.loads(_gto(repo, "history", "churn", "--json"))
    assignments = [(e["ref"], e["version"], e["stage"], e["message"]) for e in history
                   if e["event"] == "assignment"]
    assert assignments == [  # newest first
        (t2, "v1.0.0", "prod", assignment_message("churn", "v1.0.0", "prod")),
        (t1, "v2.0.0", "prod", assignment_message("churn", "v2.0.0", "prod")),
    ]

    # forward again, and a second stage, numbered per model
    t3 = _assign(repo, "churn", "v2.0.0", c2, "prod")
    t4 = _assign(repo, "churn", "v1.0.0", c1, "staging")
    assert (t3, t4) == ("churn#prod#3", "churn#staging#4")
    assert show()["stage"] == {"staging": "v1.0.0", "prod": "v2.0.0"}
    assert stage_state(_records(repo), "churn") == {"staging": "v1.0.0", "prod": "v2.0.0"}

    # gto's own next assignment continues tether's numbering. (GTO refuses, without --force, to
    # assign a stage to a version whose own latest tag for that stage is still an assignment, even
    # when `gto show` shows another version there: the rollback case.) tether dated its tags apart,
    # a second or more ahead of the clock; a person running gto next runs it after that.
    _after(max(r.time for r in _records(repo)))
    _gto(repo, "assign", "churn", "--version", "v1.0.0", "--stage", "prod", "--force")
    assert "churn#prod#5" in _tags(repo)
    assert show()["stage"]["prod"] == "v1.0.0"


# Hand-dated scenarios: (tag, commit key, seconds after t0). stage_state must agree with `gto show`,
# including the same-second ties tether avoids.
SCENARIOS = {
    "rollback": [("m#prod#1", "c2", 10), ("m#prod#2", "c1", 11)],
    "rollback-same-second": [("m#prod#1", "c2", 10), ("m#prod#2", "c1", 10)],
    "rollback-same-second-reverse": [("m#prod#1", "c1", 10), ("m#prod#2", "c2", 10)],
    "number-is-not-order": [("m#prod#2", "c2", 10), ("m#prod#1", "c1", 11)],
    "unassign-rolled-back": [("m#prod#1", "c2", 10), ("m#prod#2", "c1", 11), ("m#prod!#3", "c1", 12)],
    "unassign-same-second": [("m#prod#1", "c1", 10), ("m#prod!#2", "c1", 10)],
    "deregister": [("m#prod#1", "c2", 10), ("m#prod#2", "c1", 11), ("m@v1.0.0!", "c1", 12)],
    "simple-form": [("m#prod", "c2", 10), ("m#dev#1", "c1", 11)],
    "deprecated": [("m#prod#1", "c2", 10), ("m@deprecated", "c2", 20)],
    # c3 is committed now, after the deprecation: GTO's commit event for it revives the model
    "deprecated-before-commit-date": [("m#prod#1", "c3", 10), ("m@deprecated", "c2", 20)],
    "unregistered-commit": [("m#prod#1", "c3", 10)],
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_stage_state_mirrors_gto_show(tmp_path, scenario):
    t0 = int(time.time()) - 3600  # realistic: releases an hour ago, commits before them
    repo, c1, c2 = _repo(tmp_path, when=t0 - 600)
    (repo / "model.txt").write_text("three\n")
    _git(repo, "commit", "-qam", "three")  # now
    commits = {"c1": c1, "c2": c2, "c3": _git(repo, "rev-parse", "HEAD")}
    _git(repo, "tag", "-a", "m@v1.0.0", "-m", registration_message("m", "v1.0.0"), c1, when=t0)
    _git(repo, "tag", "-a", "m@v2.0.0", "-m", registration_message("m", "v2.0.0"), c2, when=t0 + 1)
    for name, key, dt in SCENARIOS[scenario]:
        _git(repo, "tag", "-a", name, "-m", "by hand", commits[key], when=t0 + dt)
    recs = _records(repo)
    shown = json.loads(_gto(repo, "show", "--json"))
    assert ("m" not in shown) is is_deprecated(recs, "m")
    if scenario.startswith("deprecated"):
        assert ("m" not in shown) is (scenario == "deprecated")
    if "m" in shown:
        ours = {s: v for s, v in stage_state(recs, "m").items() if v is not None}
        theirs = {s: v for s, v in shown["m"]["stage"].items() if v is not None}
        assert ours == theirs
    if scenario == "rollback":
        assert shown["m"]["stage"]["prod"] == "v1.0.0"
    if scenario == "unregistered-commit":
        assert shown["m"]["stage"]["prod"] == commits["c3"]
