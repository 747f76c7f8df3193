"""A new user's first hour (issue 30): release notes shown back (item 5), and the mistakes that
get help (item 6): "did you mean" for environments, releases and models, `show latest` and
`show MODEL`, --approver from git's user.email, a deploy target inside the repository refused."""

from __future__ import annotations

V1 = "fraud-detector@v1.0.0"


def test_the_note_given_with_release_m_is_shown_escaped(project):
    # the template's v1.0.0 was released with -m "first release"
    assert "  note        first release\n" in project.ok("show", V1).out
    assert project.ok("show", V1, "--json").json()["note"] == "first release"
    assert project.ok("list", "--json").json()[0]["note"] == "first release"

    hostile = "fix {braces} \x1b[2J\nsecond line"  # control characters, a brace, two lines
    tag = project.release_code_change("notes", "-m", hostile)
    shown = project.ok("show", tag).out
    assert "\x1b" not in shown and "fix {braces} \\x1b[2J\n              second line" in shown, shown
    as_json = project.ok("show", tag, "--json").json()
    assert as_json["note"] == hostile and as_json["version"] == tag.split("@v")[1]  # the manifest still reads
    rows = {r["tag"]: r for r in project.ok("list", "--json").json()}
    assert rows[tag]["note"] == hostile and rows[tag]["complete"] is True

    plain = project.release_code_change("no note")  # release's default message is no note
    assert "note" not in project.ok("show", plain, "--json").json()
    assert "  note " not in project.ok("show", plain).out


def test_mistakes_get_a_did_you_mean(project):
    res = project.tether("show", "prod")
    assert res.code == 3 and "did you mean production?" in res.err, res.err
    res = project.tether("show", "fraudectr@v1.0.0")
    assert res.code == 3 and "did you mean fraud-detector?" in res.err, res.err
    res = project.tether("show", "fraud-detector@v1.0.1")
    assert res.code == 3 and f"did you mean {V1}?" in res.err, res.err
    res = project.tether("promote", V1, "--env", "stagin", "--reason", "t")
    assert res.code == 3 and "did you mean staging?" in res.err, res.err


def test_show_latest_and_show_model(project):
    for ref in ("latest", "fraud-detector", "fraud-detector@latest"):
        for _ in range(2):  # computed, then answered from the kept view: the same
            res = project.ok("show", ref, "--json")
            assert res.json()["version"] == "1.0.0", (ref, res.out)
    assert project.ok("show", "latest").out == project.ok("show", V1).out


def test_the_approver_defaults_to_git_user_email(project):
    project.ok("promote", V1, "--env", "staging", "--reason", "first")
    events = project.ok("history", "--env", "staging", "--json").json()["environments"]["staging"]["events"]
    assert events[0]["approver"] == "tess@example.com"
    project.git("config", "--unset", "user.email")
    res = project.tether("rollback", "--env", "staging", "--reason", "no one")
    assert res.code == 2 and "--approver" in res.err, res.err
    res = project.tether("canary", "weight", "10", "--env", "staging", "--reason", "no one")
    assert res.code == 2 and "--approver" in res.err, res.err


def test_a_deploy_target_inside_the_repository_is_refused(project):
    project.ok("promote", V1, "--env", "staging", "--approver", "ops", "--reason", "t")
    before = project.snapshot()
    for target in ("models", "serving", str(project.root / "deep/serving")):
        res = project.tether("deploy", "--env", "staging", "--target", target)
        assert res.code == 2 and "inside the repository" in res.err, res.err
    assert project.snapshot() == before and project.git("status", "--porcelain") == ""
