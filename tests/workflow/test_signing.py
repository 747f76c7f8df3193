"""Signed releases and environment moves (issue 14): git signs (SSH keys made by ssh-keygen
here), git verifies against the committed `.tether/allowed_signers`, and check, promote,
rollback, history and deploy refuse what the policy in dvc.yaml rejects, with exit 6 and
nothing moved. On the churn shape (a `dvc add`ed pickle, no stage produces it), not the
reference project."""

from __future__ import annotations

import pytest
from shapes import build_churn, retrain_churn
from signhelp import LEAD, as_signer, enable_signing, forge_move, keygen, refs


def test_a_signed_release_and_promotion_pass_and_history_names_the_signer(signed, tmp_path):
    p, keys = signed
    p.ok("check")
    res = p.ok("promote", "churn@v1.1.0", "--env", "production", "--sign", *LEAD, "--push", "--json")
    assert res.json()["sign"] is True
    head = p.git("rev-parse", "production")
    show = p.git("-c", f"gpg.ssh.allowedSignersFile={p.root / '.tether/allowed_signers'}",
                 "log", "-1", "--format=%G? %GS", head)
    assert show == "G lead@example.com"  # git's own verdict, not ours
    hist = p.ok("history", "--env", "production")
    assert hist.out.count("signed: lead@example.com") == 2, hist.out
    rows = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"]
    assert [r["signature"]["principal"] for r in rows] == ["lead@example.com"] * 2
    target = tmp_path / "serving"
    allowed = p.root / ".tether/allowed_signers"
    res = p.ok("deploy", "--env", "production", "--target", str(target),
               "--require-signed", "--allowed-signers", str(allowed), "--json")
    assert res.json()["release"] == "churn@v1.1.0"
    p.ok("rollback", "--env", "production", "--sign", *LEAD)


@pytest.mark.parametrize("case", ["unsigned", "unknown-key", "not-allowed-here", "approver-lies"])
def test_promote_refuses_a_move_the_policy_rejects_and_moves_nothing(signed, case):
    p, keys = signed
    before = refs(p)
    args = ["promote", "churn@v1.1.0", "--env", "production", "--push"]
    env = None
    if case == "unsigned":
        res = p.tether(*args, *LEAD)
        assert "requires signed moves" in res.err
    elif case == "unknown-key":
        res = p.tether(*args, "--sign", *LEAD, env=as_signer(keys["rogue"]))
        assert "not in the allowed signers file" in res.err
    elif case == "not-allowed-here":  # ops may sign staging, not production
        res = p.tether(*args, "--sign", "--approver", "ops@example.com", "--reason", "x", env=as_signer(keys["ops"]))
        assert "ops@example.com, who is not allowed here" in res.err
    else:
        res = p.tether(*args, "--sign", "--approver", "ceo@example.com", "--reason", "x", env=env)
        assert "Tether-Approver says 'ceo@example.com' but the move is signed by lead@example.com" in res.err
    assert res.code == 6, res.err
    assert "nothing was moved" in res.err
    assert refs(p) == before


@pytest.mark.parametrize("case", ["unsigned", "unknown-key", "approver-lies"])
def test_a_forged_move_is_refused_by_check_history_promote_rollback_and_deploy(signed, tmp_path, case):
    p, keys = signed
    target = tmp_path / "serving"
    allowed = p.root / ".tether/allowed_signers"
    deploy = ("deploy", "--env", "production", "--target", str(target),
              "--require-signed", "--allowed-signers", str(allowed))
    p.ok(*deploy)
    assert (target / "current").resolve().name == "churn@v1.0.0"
    key = {"unsigned": None, "unknown-key": keys["rogue"], "approver-lies": keys["lead"]}[case]
    approver = "ceo@example.com" if case == "approver-lies" else "lead@example.com"
    bad = forge_move(p, "production", "churn@v1.1.0", approver=approver, key=key)

    refused_by_all(p, bad, ("check", "--offline"), ("history", "--env", "production"),
                   ("promote", "churn@v1.0.0", "--env", "production", "--sign", *LEAD),
                   ("rollback", "--env", "production", "--sign", *LEAD), deploy)
    # the host refused and kept serving the previous release
    assert (target / "current").resolve().name == "churn@v1.0.0"


def refused_by_all(p, bad: str, *commands: tuple) -> None:
    """Each command refuses with exit 6 naming the bad move, and no ref moves."""
    for args in commands:
        before = refs(p)
        res = p.tether(*args)
        assert res.code == 6, (args, res.out, res.err)
        assert bad[:12] in res.err + res.out, (args, res.err)
        assert refs(p) == before


def test_an_unsigned_or_unknown_release_tag_is_refused(signed, tmp_path):
    p, keys = signed
    retrain_churn(p, 3)
    res = p.tether("release")
    assert res.code == 6 and "must be signed" in res.err and "nothing was tagged" in res.err
    assert "churn@v1.2.0" not in p.tags()
    res = p.tether("release", "--sign", "--push", env=as_signer(keys["rogue"]))
    assert res.code == 6 and "not in the allowed signers file" in res.err, res.err
    assert "churn@v1.2.0" not in p.tags()  # the tag git made is removed again, and never pushed
    assert "churn@v1.2.0" not in p.sh("git", "tag", "--list", cwd=p.origin).out
    p.git("tag", "-a", "-m", "by hand", "churn@v1.2.0")  # annotated, unsigned
    res = p.tether("check", "--offline")
    assert res.code == 6 and "churn@v1.2.0: signature:" in res.out and "unsigned" in res.out, res.out
    res = p.tether("promote", "churn@v1.2.0", "--env", "staging", "--sign", *LEAD)
    assert res.code == 6 and "release tag churn@v1.2.0" in res.err


def test_history_from_before_the_policy_is_reported_not_refused(tmp_path):
    """A repository that adopts signing keeps its unsigned past: moves older than the first
    signed one are shown unsigned; the newest must be signed."""
    keys = {n: keygen(tmp_path / n, n) for n in ("lead",)}
    p = build_churn(tmp_path / "p", "dvc")
    p.ok("release", "--push")
    p.ok("promote", "churn@v1.0.0", "--env", "staging", *LEAD, "--push")
    enable_signing(p, keys, {"lead@example.com": "lead"},
                   policy="        signing:\n          environments:\n            staging: {require_signed: true}\n")
    retrain_churn(p, 2)
    p.ok("release", "--push")
    res = p.tether("promote", "churn@v1.1.0", "--env", "staging", *LEAD)
    assert res.code == 6 and "requires signed moves" in res.err
    p.ok("promote", "churn@v1.1.0", "--env", "staging", "--sign", *LEAD)
    out = p.ok("history", "--env", "staging").out
    assert "signed: lead@example.com" in out and "unsigned" in out and "REFUSED" not in out
    p.ok("check", "--offline")


def test_a_malformed_policy_is_a_usage_error(tmp_path):
    p = build_churn(tmp_path / "p", "dvc")
    y = p.root / "dvc.yaml"
    y.write_text(y.read_text().replace("        smoke: false\n", "        smoke: false\n        signing:\n"
                                       "          environments: {production: {require_signed: yes please}}\n"))
    res = p.tether("status")
    assert res.code == 2 and "meta.tether.signing.environments.production.require_signed" in res.err, res.err


def test_an_openpgp_signed_release_parses_and_verifies(tmp_path):
    """The other format git signs with: a gpg key made here (no passphrase), `release --sign`
    with git's default gpg.format, read back by list/show and judged by check."""
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(gnupg)}
    p = build_churn(tmp_path / "p", "dvc")
    p.sh("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "Lee Lead <lead@example.com>", "ed25519",
         "sign", "never", env=env)
    y = p.root / "dvc.yaml"
    y.write_text(y.read_text().replace("        smoke: false\n", "        smoke: false\n        signing:\n"
                                       "          releases: {require_signed: true, principals: [lead@example.com]}\n"))
    p.commit_all("only the lead releases")
    p.git("config", "user.signingkey", "lead@example.com")
    res = p.tether("release", "--sign", "--push", env=env)
    assert res.code == 0, res.err
    raw = p.git("cat-file", "tag", "churn@v1.0.0")
    assert "-----BEGIN PGP SIGNATURE-----" in raw
    shown = p.tether("show", "churn@v1.0.0", "--json", env=env)
    assert shown.code == 0 and shown.json()["version"] == "1.0.0"  # the signature is not part of the manifest
    assert "INCOMPLETE" not in p.tether("list", env=env).out
    assert p.tether("check", "--offline", env=env).code == 0
    # without the key in the keyring git cannot check it: refused like any unverifiable signature
    (tmp_path / "empty").mkdir(mode=0o700)
    res = p.tether("check", "--offline", env={"GNUPGHOME": str(tmp_path / "empty")})
    assert res.code == 6 and "signature git cannot check" in res.out, res.out


def test_a_forged_verdict_kept_under_git_tether_never_passes_an_enforcing_command(signed, tmp_path):
    """Verdicts `history` remembers under .git/tether/signatures are a file anybody with the
    repository can write: check, promote, rollback and deploy have git verify every move afresh,
    so an unsigned move with a forged "good, signed by the lead" verdict is still refused."""
    import hashlib
    import json

    p, _keys = signed
    target = tmp_path / "serving"
    allowed = p.root / ".tether/allowed_signers"
    deploy = ("deploy", "--env", "production", "--target", str(target),
              "--require-signed", "--allowed-signers", str(allowed))
    p.ok(*deploy)
    bad = forge_move(p, "production", "churn@v1.1.0", approver="lead@example.com", key=None)
    lie = ["G", "lead@example.com", "SHA256:" + "A" * 43]  # where `history` keeps verdicts for this signers file
    folder = p.root / ".git/tether/signatures"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{hashlib.sha256(allowed.read_bytes()).hexdigest()}.json").write_text(json.dumps({bad: lie}))
    refused_by_all(p, bad, ("check", "--offline"), ("promote", "churn@v1.0.0", "--env", "production", "--sign", *LEAD),
                   ("rollback", "--env", "production", "--sign", *LEAD), deploy)
    assert (target / "current").resolve().name == "churn@v1.0.0"
