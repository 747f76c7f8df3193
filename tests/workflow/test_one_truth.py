"""The registry has one answer (issue 26 items 5, 6, 7, 8, 13): what an environment holds is its
branch whatever GTO's tags say; a release-named tag on a blob or a tree is one finding; damaged
DVC objects never make an answer; a kept answer equals a fresh one; releases are found whatever
HEAD's dvc.yaml says."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

from project import BIN, Project, clone_of, promote_to, threshold_release

MODEL = "fraud-detector"
V1 = f"{MODEL}@v1.0.0"


def gto(p: Project, *args: str, check: bool = True):
    return p.sh(os.path.join(BIN, "gto"), *args, check=check)


def hand_gto_tag(p: Project, name: str, target: str, ahead: int = 5, sign: bool = False) -> None:
    """An annotated GTO tag made with plain git, dated `ahead` seconds after now (GTO orders
    its tags by whole-second tagger dates)."""
    when = f"{int(time.time()) + ahead} +0000"
    p.sh("git", "tag", "-a", *(["-s"] if sign else []), name, "-m", f"by hand: {name}", f"{target}^{{commit}}",
         env={"GIT_COMMITTER_DATE": when})


def answers(p: Project, env: str) -> dict:
    st = p.ok("status", "--json").json()[0]
    hist = p.ok("history", "--env", env, "--json").json()["environments"][env]["events"]
    shown = p.tether("show", env, "--json")
    return {"status": st["environments"][env], "gto": st.get("gto", {}).get(env),
            "history": hist[0]["release"] if hist and hist[0]["action"] != "unassign" else None,
            "show": shown.json()["version"] if shown.code == 0 else shown.code}


# -- item 5: what an environment holds has one answer ------------------------------------------
def test_a_later_gto_tag_never_changes_what_an_environment_runs(project_live, tmp_path):
    p = project_live  # V1 live in production
    v2 = threshold_release(p, 0.35)
    p.git("push", "-q", "origin", "production")
    hand_gto_tag(p, f"{MODEL}#production#99", v2)
    p.git("push", "-q", "origin", f"{MODEL}#production#99")
    for who in (p, clone_of(p, tmp_path)):  # and on a teammate's fresh clone
        a = answers(who, "production")
        assert (a["status"], a["history"], a["show"]) == (V1, V1, "1.0.0"), a
        assert a["gto"]["tag"] == f"{MODEL}#production#99" and a["gto"]["gto"] == v2
        text = who.ok("status").out
        assert f"gto: {MODEL}#production#99 puts {v2} in production; the branch decides" in text
        res = who.tether("check", "--json", "--offline")
        assert res.code == 4, res.out + res.err
        assert [f["kind"] for f in res.json()["findings"]] == ["gto-disagrees"]
    res = p.ok("deploy", "--env", "production", "--target", str(tmp_path / "deploy"), "--dry-run", "--json")
    assert V1 in json.dumps(res.json()) and v2 not in json.dumps(res.json())

    # resolved by re-tagging GTO to the branch's release (the documented command)
    dated = int(p.git("for-each-ref", "--format=%(taggerdate:unix)", f"refs/tags/{MODEL}#production#99"))
    while int(time.time()) <= dated:  # GTO compares whole-second tagger dates: gto's tag must be later
        time.sleep(0.2)
    gto(p, "assign", MODEL, "--version", "v1.0.0", "--stage", "production", "--force")
    assert answers(p, "production")["gto"] is None
    assert "gto:" not in p.ok("status").out
    p.ok("check", "--offline")


def test_promote_makes_the_branch_follow_gto(project_live):
    p = project_live
    v2 = threshold_release(p, 0.35)
    hand_gto_tag(p, f"{MODEL}#production#99", v2)
    assert answers(p, "production")["gto"]["gto"] == v2
    promote_to(p, v2)
    a = answers(p, "production")
    assert (a["status"], a["history"], a["gto"]) == (v2, v2, None), a


def test_an_unassign_tag_never_empties_an_environment_with_a_branch(project_live):
    p = project_live
    hand_gto_tag(p, f"{MODEL}#production!#100", V1)
    a = answers(p, "production")
    assert (a["status"], a["history"], a["show"]) == (V1, V1, "1.0.0"), a
    assert a["gto"]["gto"] == "" and "leaves production empty" in p.ok("status").out


def test_gto_alone_defines_an_environment_without_a_branch_but_never_unsigned_under_a_policy(signed):
    p, keys = signed  # churn, signed policy: staging and production need signed moves
    for ref in ("refs/heads/staging", "refs/remotes/origin/staging"):
        p.git("update-ref", "-d", ref)
    p.sh("git", "push", "-q", "origin", ":staging")
    hand_gto_tag(p, "churn#staging#50", "churn@v1.1.0")
    st = p.ok("status", "--json").json()[0]
    assert st["environments"]["staging"] is None, st  # an unsigned GTO tag changes nothing
    assert p.tether("show", "staging").code == 3
    hand_gto_tag(p, "churn#staging#51", "churn@v1.0.0", ahead=7, sign=True)
    st = p.ok("status", "--json").json()[0]
    assert st["environments"]["staging"] == "churn@v1.0.0", st  # a signed one by an allowed signer counts
    assert p.ok("show", "staging", "--json").json()["version"] == "1.0.0"


# -- item 6: a release-named tag on a blob or a tree -------------------------------------------
def test_a_release_named_tag_on_a_blob_or_a_tree_is_one_finding_never_a_release(project_live, tmp_path):
    p = project_live
    blob = p.git("rev-parse", "HEAD:dvc.yaml")
    tree = p.git("rev-parse", "HEAD^{tree}")
    p.git("tag", f"{MODEL}@v9.9.9", blob)
    p.git("tag", f"{MODEL}@v8.8.8", tree)
    p.git("tag", "-a", f"{MODEL}@v7.7.7", "-m", "annotated, on a blob", blob)
    p.git("push", "-q", "origin", "--tags", "production")
    bad = {f"{MODEL}@v9.9.9", f"{MODEL}@v8.8.8", f"{MODEL}@v7.7.7"}
    for who in (p, clone_of(p, tmp_path)):
        rows = who.ok("list", "--json").json()
        assert {r["tag"] for r in rows} == {V1}, rows
        st = who.ok("status", "--json").json()[0]
        assert st["latest"] == V1 and st["environments"]["production"] == V1
        who.ok("history", "--json")
        res = who.tether("check", "--json", "--offline")
        assert res.code == 6, res.out + res.err
        assert {f["tag"] for f in res.json()["findings"]} == bad
        assert all(f["kind"] == "unusable" and "not a commit" in f["message"] for f in res.json()["findings"])
        res = who.tether("promote", f"{MODEL}@v8.8.8", "--env", "staging", "--approver", "a", "--reason", "r")
        assert res.code == 3, res.out + res.err  # no such release: nothing moved
        assert "traceback" not in (res.out + res.err).lower()
    # `release` is not blocked by a tree that looks like "nothing changed"
    p.code_only_change("after a bogus tag")
    plan = p.ok("release", "--dry-run", "--json").json()
    assert plan["version"] == "1.0.1", plan


# -- item 7: damaged local state never makes an answer ------------------------------------------
def _weights_md5(p: Project, tag: str, name: str) -> str:
    m = p.ok("show", tag, "--json").json()
    return next(w["md5"] for w in m["components"]["weights"] if w["path"].endswith(name))


def _threshold(p: Project, tag: str):
    res = p.tether("show", tag, "--json")
    return res.json()["components"]["threshold"]["value"] if res.code == 0 else res.code


def test_a_damaged_dvc_object_is_never_read_nor_kept(project, tmp_path):
    p = project
    v2 = threshold_release(p, 0.35)  # annotated: tether's attestation says 0.35
    plain = f"{MODEL}@v1.0.2"
    p.git("tag", plain, v2 + "^{commit}")  # a plain git tag on the same commit: no attestation
    p.git("push", "-q", "origin", plain, "main")
    md5 = _weights_md5(p, v2, "threshold.json")
    c = clone_of(p, tmp_path)  # a teammate's fresh clone, with the objects pulled
    c.dvc("pull", "-q")
    obj = c.root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    good = obj.read_bytes()
    assert json.loads(good)["value"] == 0.35
    obj.chmod(0o644)
    obj.write_bytes(b'{"value": 0.99}')  # damaged on disk: valid JSON, the wrong bytes
    for tag in (plain, v2):
        assert _threshold(c, tag) != 0.99, tag  # never taken, never a "disagrees … edited by hand"
    assert c.ok("show", v2, "--json").json()["components"]["threshold"]["value"] in (None, 0.35)
    obj.write_bytes(good)  # repaired: the next read answers from the good bytes
    assert _threshold(c, plain) == 0.35 and _threshold(c, v2) == 0.35
    c.ok("check", "--offline")


def test_a_damaged_directory_listing_is_never_read_nor_kept(tmp_path):
    from shapes import build_textclf, listing, lock_outputs, object_path

    p = build_textclf(tmp_path / "p")  # directory outputs; threshold.json inside models/textclf/
    p.git("tag", "textclf@v1.0.0")  # a plain git tag: no attestation to catch a wrong value
    want = json.loads((p.root / "models/textclf/threshold.json").read_text())["value"]
    dir_md5 = lock_outputs(p.root)["models/textclf"]
    obj = object_path(p.root / ".dvc/cache", dir_md5)
    good = obj.read_bytes()
    entries = listing(p.root / ".dvc/cache", dir_md5)
    forged = b'{"value": 0.99}'
    other = hashlib.md5(forged).hexdigest()  # a sound object the damaged listing will name
    object_path(p.root / ".dvc/cache", other).parent.mkdir(parents=True, exist_ok=True)
    object_path(p.root / ".dvc/cache", other).write_bytes(forged)
    bad = [{**e, "md5": other} if e["relpath"] == "threshold.json" else e for e in entries]
    obj.chmod(0o644)
    obj.write_text(json.dumps(bad))  # the listing damaged on disk: threshold.json names another object

    def threshold():
        res = p.tether("show", "textclf@v1.0.0", "--json")
        return res.json()["components"]["threshold"]["value"] if res.code == 0 else res.code

    assert threshold() in (None, want)
    obj.write_bytes(good)
    assert threshold() == want
    assert p.ok("list", "--json").json()[0]["complete"]


# -- item 8: a kept answer is the answer a fresh read gives -----------------------------------
READS = [("list",), ("status",), ("history",), ("show", "production"),
         ("list", "--json"), ("status", "--json"), ("history", "--json"), ("show", "production", "--json")]


def reads(p: Project) -> dict:
    out = {}
    for args in READS:
        res = p.tether(*args)
        out[" ".join(args)] = (res.code, res.out)
    return out


def assert_kept_is_fresh(p: Project) -> dict:
    """Every read answered as it is now (kept views, kept logs) equals the same read with
    everything tether keeps under .git/tether removed; then the views are kept again."""
    kept = reads(p)
    shutil.rmtree(p.root / ".git" / "tether", ignore_errors=True)
    fresh = reads(p)
    for what in fresh:
        assert kept[what] == fresh[what], f"tether {what}: kept {kept[what]} != fresh {fresh[what]}"
    reads(p)  # keep them for the next change
    return fresh


def two_moves(p: Project) -> str:
    v2 = threshold_release(p, 0.35)
    promote_to(p, v2)
    p.git("push", "-q", "origin", "production", "main")
    return v2


def test_kept_answers_equal_fresh_ones_across_git_replace(project_live):
    p = project_live
    v2 = two_moves(p)
    assert_kept_is_fresh(p)
    head = p.git("rev-parse", "production")
    p.git("replace", head, "production~1")  # the head now "means" the V1 move
    after = assert_kept_is_fresh(p)
    assert after["show production --json"][0] == 0
    assert json.loads(after["show production --json"][1])["version"] == "1.0.1"  # ids name their content
    assert v2.endswith("1.0.1")
    p.git("replace", "-d", head)
    assert_kept_is_fresh(p)


def test_kept_answers_equal_fresh_ones_across_unshallow(project_live, tmp_path):
    p = project_live
    two_moves(p)
    c = Project(tmp_path / "shallow")
    c.root = tmp_path / "shallow" / "project"
    c.root.parent.mkdir(parents=True)
    p.sh("git", "clone", "-q", "--depth", "1", "--no-single-branch", f"file://{p.origin}", str(c.root),
         cwd=tmp_path)
    assert c.git("rev-parse", "--is-shallow-repository") == "true"
    shallow = assert_kept_is_fresh(c)
    c.git("fetch", "-q", "--unshallow", "origin")
    full = assert_kept_is_fresh(c)
    events = json.loads(full["history --json"][1])["environments"]["production"]["events"]
    assert [e["release"] for e in events] == [f"{MODEL}@v1.0.1", V1]
    assert shallow["history --json"] != full["history --json"]


def test_kept_history_follows_the_openpgp_keyring(project_live, tmp_path, monkeypatch):
    p = project_live
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    p.sh("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Tess <tess@example.com>", "ed25519",
         "sign", "never")
    p.git("config", "user.signingkey", "tess@example.com")
    p.git("config", "gpg.format", "openpgp")
    v2 = threshold_release(p, 0.35)
    p.ok("promote", v2, "--env", "production", "--sign", "--approver", "tess@example.com", "--reason", "signed",
         "--allow-regression", "test", "--skip-staging", "test")
    before = assert_kept_is_fresh(p)
    assert "signed" in before["history"][1]
    fpr = p.sh("gpg", "--batch", "--with-colons", "--list-keys", "tess@example.com").out
    fpr = next(line.split(":")[9] for line in fpr.splitlines() if line.startswith("fpr:"))
    p.sh("gpg", "--batch", "--yes", "--delete-secret-and-public-key", fpr)
    after = assert_kept_is_fresh(p)
    assert after["history --json"] != before["history --json"]  # no longer verified: it must show


# -- item 13: a branch whose dvc.yaml predates the model ---------------------------------------
def predating_branch(p: Project) -> None:
    """A branch whose dvc.yaml declares no model artifact (made before the model was)."""
    p.git("checkout", "-q", "-b", "before-model")
    y = p.root / "dvc.yaml"
    y.write_text(y.read_text().split("\nartifacts:", 1)[0] + "\n")
    p.git("commit", "-qam", "a dvc.yaml from before the model")


def test_releases_are_found_whatever_heads_dvc_yaml_says(project_live, tmp_path):
    p = project_live
    v2 = threshold_release(p, 0.35)
    p.git("push", "-q", "origin", "production", "main")
    c = clone_of(p, tmp_path)
    for who in (p, c):
        predating_branch(who)
        gto_versions = json.loads(gto(who, "show", "--json").out)[MODEL]
        assert gto_versions["version"]  # GTO lists the releases
        rows = who.ok("list", "--json").json()
        assert [r["tag"] for r in rows] == [v2, V1], rows
        assert "no releases yet" not in who.ok("list").out
        st = who.ok("status", "--json").json()
        assert st[0]["latest"] == v2 and st[0]["environments"]["production"] == V1
        assert who.ok("status").out.startswith(MODEL)
        assert who.ok("show", "production", "--json").json()["version"] == "1.0.0"
        hist = who.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
        assert [e["release"] for e in hist] == [V1]
        res = who.tether("check", "--json", "--offline")
        assert res.code == 0 and set(res.json()["checked"]) == {V1, v2}, res.out + res.err
    p.git("tag", "lost@v1.0.0", "main")  # a release tag of a model no dvc.yaml declares
    res = p.tether("check", "--json", "--offline")
    assert res.code == 6 and [f["tag"] for f in res.json()["findings"]] == ["lost@v1.0.0"], res.out
    p.git("checkout", "-q", "main")  # where HEAD's dvc.yaml names the models, other tags are not tether's
    p.ok("check", "--offline")
