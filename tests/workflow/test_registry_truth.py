"""Registry truth on repositories tether did not shape: fresh clones (environments only on
origin), hand commits on an environment branch, a second model added later, releases made
with plain `git tag` and `gto register`, GTO's own assignment tags, hand-written manifests
that lie, malformed tags, and a gc that must never delete what is live."""

from __future__ import annotations

import json
import os

import pytest
from project import BIN, Project, clone_of, promote_to, threshold_release

MODEL = "fraud-detector"
V1 = f"{MODEL}@v1.0.0"


def remote_has(p: Project, md5: str) -> bool:
    return (p.store / "files" / "md5" / md5[:2] / md5[2:]).exists()


def release_md5s(p: Project, tag: str, cwd=None) -> list[str]:
    m = p.ok("show", tag, "--json", cwd=cwd).json()
    return [e["md5"] for part in ("weights", "data") for e in m["components"][part]
            if e.get("md5") and not e.get("git_id")]


def gto(p: Project, *args: str, check: bool = True):
    return p.sh(os.path.join(BIN, "gto"), *args, check=check)


def test_fresh_clone_sees_origins_environments_and_gc_cloud_keeps_the_live_release(project_live, tmp_path):
    project = project_live  # promote_to(project, V1), shared
    project.git("push", "-q", "origin", "production")
    v2 = threshold_release(project, 0.35)  # a newer release nobody runs
    live = release_md5s(project, V1)
    c = clone_of(project, tmp_path)
    assert c.git("branch", "--list", "production") == ""  # only origin/production exists here

    status = c.ok("status", "--json").json()[0]
    assert status["environments"]["production"] == V1
    assert status["refs"]["production"]["relation"] == "remote-only"
    assert "from origin/production" in c.ok("status").out
    events = c.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
    assert [e["release"] for e in events] == [V1]

    dry = c.ok("gc", "--keep", "0", "--cloud", "--dry-run", "--json").json()
    assert V1 in dry["protected_releases"] and dry["fetched_remote_state"]
    c.ok("gc", "--keep", "0", "--cloud", "--prune-now")
    assert all(remote_has(project, m) for m in live), "gc deleted objects of the live release"
    # v2, live nowhere and not among the newest 0: its tag on origin keeps its objects all the same
    assert c.ok("check", "--json").json()["ok"]
    res = c.tether("check", "--json", "--since", "v1.0.1")
    assert res.json()["skipped"] == [V1] and res.json()["checked"] == [v2]


def test_gc_cloud_refuses_when_origin_cannot_be_read(project_live):
    project = project_live  # promote_to(project, V1), shared
    before = sorted(p.name for p in (project.store / "files" / "md5").rglob("*") if p.is_file())
    project.git("remote", "set-url", "origin", str(project.base / "no-such-origin.git"))
    res = project.tether("gc", "--keep", "0", "--cloud")
    assert res.code == 7, res.err
    assert "nothing was deleted" in res.err or "deletes nothing" in res.err
    after = sorted(p.name for p in (project.store / "files" / "md5").rglob("*") if p.is_file())
    assert before == after


def test_a_hand_commit_on_production_is_history_not_the_end_of_it(project_live):
    project = project_live  # promote_to(project, V1), shared
    project.git("checkout", "-q", "production")
    (project.root / "HOTFIX.md").write_text("changed by hand on the server branch\n")
    project.commit_all("hand edit on production")
    project.git("checkout", "-q", "main")
    project.git("push", "-q", "origin", "production")
    live = release_md5s(project, V1)

    events = project.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
    assert [(e["source"], e["release"]) for e in events] == [("outside", ""), ("tether", V1)]
    assert events[0]["approver"].startswith("Tess Tether") and events[0]["reason"] == "hand edit on production"
    assert "matches no release" in project.ok("history", "--env", "production").out
    assert project.tether("show", "production").code == 6  # its tree is no release's tree

    # gc from a fresh look at the remote still keeps what the hand-made head needs
    project.ok("gc", "--keep", "0", "--cloud")
    assert all(remote_has(project, m) for m in live)

    # promotion continues from the hand commit by compare-and-swap
    v2 = threshold_release(project, 0.35)
    promote_to(project, v2)
    events = project.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
    assert [(e["source"], e["release"]) for e in events] == [("tether", v2), ("outside", ""), ("tether", V1)]
    head = project.git("rev-parse", "production")
    hand = events[1]["commit"]
    assert project.git("rev-parse", f"{head}^1") == hand
    # an outside move whose tree matches a release says which one
    project.git("checkout", "-q", "production")
    project.git("commit", "-q", "--allow-empty", "-m", "empty hand commit")
    project.git("checkout", "-q", "main")
    events = project.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
    assert events[0]["source"] == "outside" and events[0]["release"] == v2


def test_adding_a_second_model_keeps_the_first_models_branch(project_live):
    project = project_live  # promote_to(project, V1), shared
    dvc_yaml = project.root / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text() + "  fraud-weights:\n    path: models/fraud-detector/model.skops\n"
                        "    type: model\n")
    project.commit_all("a second model")
    hist = project.ok("history", "--model", MODEL, "--env", "production", "--json").json()
    assert hist["environments"]["production"]["branch"] == "production"
    assert [e["release"] for e in hist["environments"]["production"]["events"]] == [V1]
    other = project.ok("history", "--model", "fraud-weights", "--env", "production", "--json").json()
    assert other["environments"]["production"]["branch"] == "fraud-weights/production"
    rows = {r["model"]: r for r in project.ok("status", "--json").json()}
    assert rows[MODEL]["environments"]["production"] == V1
    assert rows["fraud-weights"]["environments"]["production"] is None


def test_plain_git_tags_are_releases_derived_from_their_commit(project):
    project.code_only_change("annotated by hand")
    project.git("tag", "-a", f"{MODEL}@v1.1.0", "-m", "tagged with git, no manifest")
    project.code_only_change("lightweight")
    project.git("tag", f"{MODEL}@v1.2.0")
    project.dvc("push", "-q")

    rows = {r["tag"]: r for r in project.ok("list", "--json").json()}
    for tag in (f"{MODEL}@v1.1.0", f"{MODEL}@v1.2.0"):
        assert rows[tag]["complete"], rows[tag]
        assert rows[tag]["metrics"]["recall"] == rows[V1]["metrics"]["recall"]
    shown = project.ok("show", f"{MODEL}@v1.2.0", "--json").json()
    assert shown["commit"] == project.git("rev-parse", "HEAD")
    assert shown["components"]["threshold"]["value"] == 0.3
    assert any(c["path"] == "src/fraud_detector/bundle.py" for c in shown["components"]["code"])
    project.ok("check")
    project.ok("promote", f"{MODEL}@v1.2.0", "--env", "staging", "--approver", "a", "--reason", "plain tag")
    assert project.ok("status", "--json").json()[0]["environments"]["staging"] == f"{MODEL}@v1.2.0"


def test_a_tag_message_that_lies_is_an_integrity_error_and_the_commit_wins(project):
    msg = project.git("cat-file", "-p", V1).split("\n\n", 1)[1]
    start = msg.index("{")
    manifest = json.loads(msg[start:])
    manifest["metrics"]["recall"] = 0.999
    manifest["version"] = "1.0.5"
    project.git("tag", "-a", f"{MODEL}@v1.0.5", "-m", "Release\n\n" + json.dumps(manifest, indent=2))
    rows = {r["tag"]: r for r in project.ok("list", "--json").json()}
    assert not rows[f"{MODEL}@v1.0.5"]["complete"] and "recall" in rows[f"{MODEL}@v1.0.5"]["problem"]
    res = project.tether("check")
    assert res.code == 6 and "v1.0.5" in res.out
    res = project.tether("promote", f"{MODEL}@v1.0.5", "--env", "staging", "--approver", "a", "--reason", "r")
    assert res.code == 6, res.err


MALFORMED = [
    "[" * 50_000,
    '{"schema_version": 1, "model": "fraud-detector", "components": []}',
    '{"schema_version": 1, "model": "fraud-detector", "version": "0.0.3", "commit": "x", "tree": "y", '
    '"created_at": "", "released_by": "", "components": {"weights": [], "data": [], "code": [], "params": {}, '
    '"threshold": {}}, "metrics": [1, 2]}',
    '{"schema_version": 1, "components": {"weights": "no", "data": 1, "code": null, "params": [], "threshold": 3}}',
    "\x00\x01 binary-ish",
]


def test_malformed_tags_are_findings_never_a_crash(project):
    for i, message in enumerate(MALFORMED):
        path = project.base / f"msg{i}"
        path.write_text(message.replace("\x00", ""))
        project.git("tag", "-a", f"{MODEL}@v0.0.{i + 1}", "-F", str(path))
    empty = project.sh("git", "commit-tree", "4b825dc642cb6eb9a060e54bf8d69288fbee4904", "-m", "no pipeline").out.strip()
    project.git("tag", f"{MODEL}@v0.1.0", empty)  # a commit with no dvc.yaml
    for args in (["list"], ["list", "--json"], ["status"], ["check", "--offline"], ["check"],
                 ["show", f"{MODEL}@v0.0.2"], ["show", f"{MODEL}@v0.1.0"], ["release", "--dry-run"]):
        res = project.tether(*args)
        assert res.code != 1, f"{args}: {res.err}"
        assert "Traceback" not in res.err and "hint: run again with --debug" not in res.err, f"{args}: {res.err}"
    rows = {r["tag"]: r for r in project.ok("list", "--json").json()}
    assert not rows[f"{MODEL}@v0.1.0"]["complete"]
    # one verdict, one exit code, whichever command meets it
    for args in (["promote", f"{MODEL}@v0.1.0", "--env", "staging", "--approver", "a", "--reason", "r"],
                 ["show", f"{MODEL}@v0.1.0"], ["checkout", f"{MODEL}@v0.1.0"], ["verify", f"{MODEL}@v0.1.0"],
                 ["diff", f"{MODEL}@v0.1.0", f"{MODEL}@v1.0.0"]):
        res = project.tether(*args)
        assert res.code == 6 and "no dvc.yaml" in res.err, (args, res.code, res.err)


def test_build_metadata_names_exactly_one_tag_and_bumps_start_above_every_version(project):
    assert project.tether("show", f"{MODEL}@v1.0.0+hotfix").code == 3
    project.git("tag", "-a", f"{MODEL}@v1.0.0+hotfix", "-m", "hotfix build", "HEAD")
    assert project.ok("show", f"{MODEL}@v1.0.0+hotfix", "--json").json()["version"] == "1.0.0+hotfix"
    assert project.ok("show", V1, "--json").json()["version"] == "1.0.0"
    project.git("tag", "-a", f"{MODEL}@v3.0.0", "-m", "made with git tag long ago", "HEAD")
    project.code_only_change("after v3")
    plan = project.ok("release", "--dry-run", "--json").json()
    assert plan["version"] == "3.0.1", plan["reasons"]


def test_release_push_resumes_and_promote_push_publishes_the_release_first(project):
    project.code_only_change("unpushed release")
    tag = project.ok("release", "--json").json()["tag"]
    assert project.git("ls-remote", "--tags", "origin", tag) == ""
    res = project.ok("release", "--push", "--json").json()
    assert res["resume"] and res["tag"] == tag
    assert project.git("ls-remote", "--tags", "origin", tag) != ""

    project.code_only_change("second unpushed release")
    tag2 = project.ok("release", "--json").json()["tag"]
    md5s = release_md5s(project, tag2)
    project.ok("promote", tag2, "--env", "staging", "--approver", "a", "--reason", "r", "--push")
    assert project.git("ls-remote", "--tags", "origin", tag2) != ""
    assert all(remote_has(project, m) for m in md5s)


def test_gto_both_ways(project):
    """tether status equals `gto show` before and after a tether promotion and a rollback."""
    v2 = project.release_code_change("for gto")
    gto(project, "assign", MODEL, "--version", "v1.0.0", "--stage", "prod")

    def gto_stage(stage: str):
        return json.loads(gto(project, "show", "--json").out)[MODEL]["stage"].get(stage)

    assert gto_stage("prod") == "v1.0.0"
    status = project.ok("status", "--json").json()[0]
    assert status["environments"]["prod"] == V1  # a GTO stage tether was never configured with
    project.ok("promote", v2, "--env", "prod", "--approver", "a", "--reason", "gto interop")
    assert gto_stage("prod") == "v" + v2.split("@v")[1]
    assert project.ok("status", "--json").json()[0]["environments"]["prod"] == v2
    project.ok("rollback", "--env", "prod", "--approver", "a", "--reason", "back")
    assert gto_stage("prod") == "v1.0.0"
    hist = project.ok("history", "--env", "prod", "--json").json()["environments"]["prod"]["events"]
    assert [(e["source"], e["release"]) for e in hist] == [("tether", V1), ("tether", v2), ("gto", V1)]
    gto_hist = json.loads(gto(project, "history", MODEL, "--json").out)
    prod = [(e["version"], e["stage"]) for e in gto_hist if e.get("stage") == "prod"]
    assert len(prod) == 3 and ("v1.0.0", "prod") in prod


@pytest.mark.parametrize("env", ["production"])
def test_an_environment_ahead_of_origin_is_used_and_reported(project, env):
    promote_to(project, V1, env)
    res = project.ok("status")
    assert "ahead of origin" not in res.out  # origin has no such branch: local-only
    project.git("push", "-q", "origin", env)
    v2 = threshold_release(project, 0.35)
    promote_to(project, v2, env)
    st = project.ok("status", "--json").json()[0]
    assert st["environments"][env] == v2 and st["refs"][env]["relation"] == "ahead"
    assert "not pushed" in project.ok("status").out


def test_a_gto_registration_is_a_release(project):
    project.code_only_change("registered with gto")
    project.dvc("push", "-q")
    gto(project, "register", MODEL, "--version", "v1.1.0")
    rows = {r["tag"]: r for r in project.ok("list", "--json").json()}
    assert rows[f"{MODEL}@v1.1.0"]["complete"], rows[f"{MODEL}@v1.1.0"]
    project.ok("check")
    project.ok("promote", f"{MODEL}@v1.1.0", "--env", "staging", "--approver", "a", "--reason", "gto register")
    assert json.loads(gto(project, "show", "--json").out)[MODEL]["stage"]["staging"] == "v1.1.0"
    project.code_only_change("next")
    assert project.ok("release", "--dry-run", "--json").json()["version"] == "1.1.1"


@pytest.mark.parametrize("fmt", ["ssh", "openpgp"])
def test_a_signed_tags_manifest_parses_whatever_the_signature_format(project, tmp_path, monkeypatch, fmt):
    """git appends the signature to the tag message; the manifest before it is still read."""
    msg = json.loads(project.git("for-each-ref", "--format=%(contents)", f"refs/tags/{V1}").split("\n", 2)[2])
    msg["version"] = "1.0.1"
    msg["released_by"] = "Signed Sam"  # only the message says so
    body = tmp_path / "msg.txt"
    body.write_text(f"Release {MODEL} v1.0.1\n\n{json.dumps(msg, indent=2)}\n")
    if fmt == "ssh":
        key = tmp_path / "key"
        project.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tess", "-f", str(key))
        project.git("config", "gpg.format", "ssh")
        project.git("config", "user.signingkey", str(key))
    else:
        home = tmp_path / "gnupg"
        home.mkdir(mode=0o700)
        monkeypatch.setenv("GNUPGHOME", str(home))
        project.sh("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Tess <tess@example.com>", "ed25519",
                   "sign", "never")
        project.git("config", "user.signingkey", "tess@example.com")
    commit = project.git("rev-list", "-n", "1", V1)
    project.git("tag", "-s", "-F", str(body), f"{MODEL}@v1.0.1", commit)
    raw = project.git("cat-file", "tag", f"{MODEL}@v1.0.1")
    assert ("BEGIN SSH SIGNATURE" if fmt == "ssh" else "BEGIN PGP SIGNATURE") in raw

    rows = {r["tag"]: r for r in project.ok("list", "--json").json()}
    assert rows[f"{MODEL}@v1.0.1"]["complete"] and not rows[f"{MODEL}@v1.0.1"]["kind"], rows[f"{MODEL}@v1.0.1"]
    shown = project.ok("show", f"{MODEL}@v1.0.1", "--json").json()
    assert shown["released_by"] == "Signed Sam" and shown["derived"] is False  # the attestation was read
    assert project.ok("check", "--offline").code == 0


def test_trailers_are_read_as_git_reads_them(tmp_path):
    """Folded values and `Key:value` are trailers to git, so they are to tether."""
    from conftest import git

    from tether.adapters.gitrepo import Git

    git(tmp_path, "init", "-q", "-b", "main")
    msg = ("promote production\n\nbody\n\nTether-Action: promote\nTether-Reason: a reason that\n  goes on\n"
           "Tether-Approver:ana\n")
    git(tmp_path, "-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", msg)
    (entry,) = Git(tmp_path).log_first_parent("main")
    assert entry.trailers == {"Tether-Action": "promote", "Tether-Reason": "a reason that goes on",
                              "Tether-Approver": "ana"}


def test_control_characters_from_git_are_printed_escaped(project_live):
    """A hand commit whose message carries terminal escapes cannot recolour, retitle or
    rewrite the user's terminal through `tether history`."""
    project = project_live  # promote_to(project, V1), shared
    project.git("checkout", "-q", "production")
    evil = "fix\x1b[2K\x1b[1A\rproduction: all good\x1b]0;pwned\x07\x9b31m"
    project.git("commit", "-q", "--allow-empty", "-m", evil)
    project.git("checkout", "-q", "main")
    out = project.ok("history", "--env", "production").out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x9b" not in out, repr(out)
    events = project.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
    reason = events[0]["reason"]  # the data is kept as git has it; only its display is escaped
    assert reason.startswith("fix\x1b[2K\x1b[1A"), repr(reason)
    assert reason.replace("\x1b", "\\x1b").replace("\r", "\\x0d") in out, out


def test_dry_runs_only_read(project, tmp_path):
    """`promote --push --dry-run` and `deploy --dry-run` change no ref, fetch nothing and
    write no target, even when origin has moved on: they plan from origin as last fetched."""
    v2 = threshold_release(project, 0.35)
    other = clone_of(project, tmp_path)
    other.ok("promote", V1, "--env", "staging", "--approver", "a", "--reason", "from another clone", "--push")

    def refs():
        return project.git("for-each-ref", "--format=%(refname) %(objectname)")

    before = refs()
    res = project.ok("promote", v2, "--env", "staging", "--approver", "a", "--reason", "r", "--push",
                     "--dry-run", "--json")
    assert res.json()["dry_run"] and res.json()["release"] == v2
    assert refs() == before  # no fetch, no fast-forward of the local branch
    target = tmp_path / "serving"
    project.git("fetch", "-q", "origin")
    before = refs()
    res = project.ok("deploy", "--env", "staging", "--target", str(target), "--dry-run", "--json")
    assert res.json()["release"] == V1 and refs() == before and not target.exists()
    # the real run fetches, fast-forwards and moves from origin's head by compare-and-swap
    project.ok("promote", v2, "--env", "staging", "--approver", "a", "--reason", "r", "--push", "--allow-regression", "t")
    events = project.ok("history", "--env", "staging", "--json").json()["environments"]["staging"]["events"]
    assert [e["release"] for e in events] == [v2, V1]
