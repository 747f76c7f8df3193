"""A new user's first hour (issue 30): release notes shown back (item 5), and the mistakes that
get help (item 6): "did you mean" for environments, releases and models, `show latest` and
`show MODEL`, --approver from git's user.email, a deploy target inside the repository refused;
terminal output: tables that keep the version at 80 columns, one time format, rollbacks marked."""

from __future__ import annotations

import re

from project import promote_to, threshold_release

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


# -- terminal output (item 6): tables that keep the version, one time format, rollbacks marked --
TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


def test_at_80_columns_history_and_list_keep_the_version_and_both_read_paths_agree(project):
    from terminal import in_tty, plain

    v2 = threshold_release(project, 0.35)
    promote_to(project, V1, "staging")
    promote_to(project, v2, "staging")
    project.ok("rollback", "--env", "staging", "--approver", "ci", "--reason", "bad numbers")
    shown = {}
    for attempt in ("computed", "kept"):  # the second answer comes from the kept view (tether.cli.fastread)
        for cmd in ("history", "list"):
            code, out = in_tty(project, cmd, "--env", "staging") if cmd == "history" else in_tty(project, cmd)
            lines = [ln for ln in plain(out) if ln]
            assert code == 0 and all(len(ln) <= 80 for ln in lines), "\n".join(lines)
            assert "…" not in out, out  # one model: nothing to cut
            shown.setdefault(cmd, []).append(lines)
    history, listed = shown["history"][0], shown["list"][0]
    assert shown["history"][0] == shown["history"][1] and shown["list"][0] == shown["list"][1]
    assert history[0] == "staging (branch staging, model fraud-detector)", history
    cells = [ln.split() for ln in history[2:] if re.match(TIME_RE, ln)]  # a long reason may wrap below its row
    # TIME ACTION FROM TO: the versions whole, the rollback marked
    assert [c[1:5] for c in cells] == [["↩", "rollback", "v1.0.1", "v1.0.0"], ["promote", "v1.0.0", "v1.0.1", "ci"],
                                       ["promote", "none", "v1.0.0", "ci"]], history
    assert listed[0] == "fraud-detector" and [ln.split()[0] for ln in listed[2:] if ln.startswith("v")] == \
        ["v1.0.1", "v1.0.0"], listed
    assert len(cells) == 3 and all(re.fullmatch(TIME_RE, c[0]) for c in cells)
    # piped, the full tags (for grep and awk), the same rows
    piped = project.ok("history", "--env", "staging").out.splitlines()
    assert piped[0] == "staging (branch staging)" and "↩ rollback  fraud-detector@v1.0.1  fraud-detector@v1.0.0" in piped[2]


def test_one_time_format_with_a_hand_commit_and_the_rollback_mark_comes_from_trailers(project_live):
    p = project_live
    p.git("switch", "-q", "production")
    (p.root / "NOTE.md").write_text("by hand\n")
    p.git("add", "NOTE.md")
    # a hand commit in another zone, whose message says rollback: not a tether rollback
    p.sh("git", "commit", "-q", "-m", "rollback to v1.0.0 by hand",
         env={"GIT_COMMITTER_DATE": "2026-12-05T17:40:12+02:00", "GIT_AUTHOR_DATE": "2026-12-05T17:40:12+02:00"})
    p.git("switch", "-q", "main")
    out = p.ok("history", "--env", "production").out.splitlines()
    rows = [ln.split() for ln in out[2:]]
    assert [r[1] for r in rows] == ["outside", "promote"], out
    assert rows[0][0] == "2026-12-05T15:40:12+00:00", out  # the hand commit's time, in UTC
    assert all(re.fullmatch(TIME_RE, r[0]) for r in rows), out  # and the tether move's, to the second
    assert "↩" not in "\n".join(out)
    from terminal import in_tty, plain

    code, tty = in_tty(p, "history", "--env", "production")  # 80 columns: times whole, the versions whole
    lines = [ln for ln in plain(tty) if ln]
    rows = [ln.split() for ln in lines if re.match(TIME_RE, ln)]
    assert code == 0 and all(len(ln) <= 80 for ln in lines) and [r[:2] for r in rows] == [
        ["2026-12-05T15:40:12+00:00", "outside"], [rows[1][0], "promote"]] and rows[1][2:4] == ["none", "v1.0.0"], lines
    listed = p.ok("list").out.splitlines()[1:]
    assert all(re.fullmatch(TIME_RE, ln.split()[2]) for ln in listed), listed
    created = [ln for ln in p.ok("show", V1).out.splitlines() if ln.startswith("  created")]
    assert re.fullmatch(rf"  created     {TIME_RE} by .+", created[0]), created
    # --json keeps the recorded ISO 8601 times
    events = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
    assert events[0]["time"] == "2026-12-05T17:40:12+02:00" and events[1]["time"].endswith("Z"), events


def test_a_model_name_is_cut_before_a_version_at_80_columns(monkeypatch):
    from tether.cli import render

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(render, "is_tty", lambda: True)
    row = dict(stage="production", created_at="2026-12-05T15:40:12.123456Z", complete=True,
               metrics={"roc_auc": 0.9, "f1": 0.5}, kind="", problem="", note="")
    rows = [{**row, "model": m, "tag": f"{m}@v{v}"} for m in ("fraud-detector-transactions", "churn-predictor-monthly")
            for v in ("1.10.0", "1.9.12")]
    text = re.sub(r"\x1b\[[0-9;]*m", "", render.list_output(rows, False))
    lines = text.splitlines()
    assert all(len(ln) <= 80 for ln in lines), text
    firsts = [ln.split()[0] for ln in lines[1:] if "@" in ln]
    assert [f.split("@")[1] for f in firsts] == ["v1.10.0", "v1.9.12"] * 2, text
    assert all("…@" in f for f in firsts) and firsts[0].startswith("fraud") and firsts[2].startswith("churn"), text
    assert "2026-12-05T15:40:12+00:00" in text
