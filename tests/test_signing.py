"""Signed releases and environment moves (issue 14): git signs (SSH keys made by ssh-keygen
here), git verifies against the committed `.tether/allowed_signers`, and check, promote,
rollback, history and deploy refuse what the policy in dvc.yaml rejects, with exit 6 and
nothing moved. On the churn shape (a `dvc add`ed pickle, no stage produces it), not the
reference project."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from project import ISOLATION, Project
from shapes import build_churn, retrain_churn

POLICY = """\
        signing:
          releases: {require_signed: true}
          environments:
            staging: {require_signed: true}
            production: {require_signed: true, principals: [lead@example.com]}
"""
LEAD = ("--approver", "lead@example.com", "--reason", "reviewed")


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def as_signer(key: Path) -> dict:
    """git config for one tether run: sign with this key (git's GIT_CONFIG_* environment)."""
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "user.signingkey", "GIT_CONFIG_VALUE_0": str(key)}


def enable_signing(p: Project, keys: dict[str, Path], allowed: dict[str, str], policy: str = POLICY) -> None:
    """The committed policy: allowed signers (principal -> key name) and meta.tether.signing."""
    (p.root / ".tether").mkdir(exist_ok=True)
    lines = [f"{who} {' '.join(keys[k].with_suffix('.pub').read_text().split()[:2])}" for who, k in allowed.items()]
    (p.root / ".tether/allowed_signers").write_text("\n".join(lines) + "\n")
    y = p.root / "dvc.yaml"
    y.write_text(y.read_text().replace("        smoke: false\n", "        smoke: false\n" + policy, 1))
    p.git("config", "gpg.format", "ssh")
    p.git("config", "user.signingkey", str(keys["lead"]))
    p.commit_all("signing policy")
    p.git("push", "-q", "origin", "main")


@pytest.fixture(scope="module")
def signed_base(tmp_path_factory):
    """churn with the policy, v1.0.0 released signed by the lead and promoted (signed) to
    staging and production; v1.1.0 released signed, promoted nowhere. Built once."""
    base = tmp_path_factory.mktemp("signed")
    home = tmp_path_factory.mktemp("signed-home")
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        for k, v in ISOLATION.items():
            mp.setenv(k, v)
        keys = {n: keygen(base / n, n) for n in ("lead", "ops", "rogue")}
        p = build_churn(base / "p", "dvc")
        enable_signing(p, keys, {"lead@example.com": "lead", "ops@example.com": "ops"})
        p.ok("release", "--sign", "--push")
        p.ok("promote", "churn@v1.0.0", "--to", "staging", "--sign", *LEAD, "--push")
        p.ok("promote", "churn@v1.0.0", "--to", "production", "--sign", *LEAD, "--push")
        retrain_churn(p, 2)
        p.git("push", "-q", "origin", "main")
        p.ok("release", "--sign", "--push")
        p.ok("promote", "churn@v1.1.0", "--to", "staging", "--sign", *LEAD, "--push")
        yield p, keys


@pytest.fixture
def signed(signed_base, tmp_path):
    p0, keys = signed_base
    shutil.copytree(p0.base, tmp_path / "s", symlinks=True)
    p = Project(tmp_path / "s")
    p.git("remote", "set-url", "origin", str(p.origin))
    p.dvc("remote", "modify", "--local", "local", "url", str(p.store))
    p.git("config", "user.signingkey", str(keys["lead"]))
    return p, keys


def refs(p: Project) -> str:
    return p.refs() + "\n" + p.sh("git", "for-each-ref", cwd=p.origin).out


def test_a_signed_release_and_promotion_pass_and_history_names_the_signer(signed, tmp_path):
    p, keys = signed
    p.ok("check")
    res = p.ok("promote", "churn@v1.1.0", "--to", "production", "--sign", *LEAD, "--push", "--json")
    assert res.json()["sign"] is True
    head = p.git("rev-parse", "production")
    show = p.git("-c", f"gpg.ssh.allowedSignersFile={p.root / '.tether/allowed_signers'}",
                 "log", "-1", "--format=%G? %GS", head)
    assert show == "G lead@example.com"  # git's own verdict, not ours
    hist = p.ok("history", "--env", "production")
    assert hist.out.count("[signed: lead@example.com]") == 2, hist.out
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
    args = ["promote", "churn@v1.1.0", "--to", "production", "--push"]
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


def forge_move(p: Project, env: str, release: str, *, approver: str, key: Path | None) -> str:
    """A move commit made by hand, shaped exactly like tether's (its trailers copied from the
    environment's newest move), then the branch moved to it locally and on origin with force."""
    head = p.git("rev-parse", env)
    trailers = p.git("log", "-1", "--format=%(trailers:only,unfold)", head)
    tag_obj = p.git("rev-parse", f"refs/tags/{release}")
    commit = p.git("rev-parse", f"{release}^{{commit}}")
    lines = []
    for line in trailers.splitlines():
        k, _, v = line.partition(": ")
        v = {"Tether-Release": release, "Tether-Tag-Object": tag_obj, "Tether-Approver": approver,
             "Tether-Action": "promote"}.get(k, v)
        lines.append(f"{k}: {v}")
    msg = f"promote {env} to {release}\n\nby hand\n\n" + "\n".join(lines) + "\n"
    sign = ["-S"] if key else []
    conf = ["-c", f"user.signingkey={key}"] if key else []
    proc = subprocess.run(["git", *conf, "commit-tree", *sign, f"{release}^{{tree}}", "-p", head, "-p", commit],
                          cwd=p.root, input=msg, capture_output=True, text=True, env=p.env(), check=True)
    new = proc.stdout.strip()
    p.git("update-ref", f"refs/heads/{env}", new)
    p.git("push", "-q", "--force", "origin", f"{env}:{env}")
    return new


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

    for args in (("check", "--offline"), ("history", "--env", "production"),
                 ("promote", "churn@v1.0.0", "--to", "production", "--sign", *LEAD),
                 ("rollback", "--env", "production", "--sign", *LEAD), deploy):
        before = refs(p)
        res = p.tether(*args)
        assert res.code == 6, (args, res.out, res.err)
        assert bad[:12] in res.err + res.out, (args, res.err)
        assert refs(p) == before
    # the host refused and kept serving the previous release
    assert (target / "current").resolve().name == "churn@v1.0.0"


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
    res = p.tether("promote", "churn@v1.2.0", "--to", "staging", "--sign", *LEAD)
    assert res.code == 6 and "release tag churn@v1.2.0" in res.err


def test_history_from_before_the_policy_is_reported_not_refused(tmp_path):
    """A repository that adopts signing keeps its unsigned past: moves older than the first
    signed one are shown unsigned; the newest must be signed."""
    keys = {n: keygen(tmp_path / n, n) for n in ("lead",)}
    p = build_churn(tmp_path / "p", "dvc")
    p.ok("release", "--push")
    p.ok("promote", "churn@v1.0.0", "--to", "staging", *LEAD, "--push")
    enable_signing(p, keys, {"lead@example.com": "lead"},
                   policy="        signing:\n          environments:\n            staging: {require_signed: true}\n")
    retrain_churn(p, 2)
    p.ok("release", "--push")
    res = p.tether("promote", "churn@v1.1.0", "--to", "staging", *LEAD)
    assert res.code == 6 and "requires signed moves" in res.err
    p.ok("promote", "churn@v1.1.0", "--to", "staging", "--sign", *LEAD)
    out = p.ok("history", "--env", "staging").out
    assert "[signed: lead@example.com]" in out and "[unsigned]" in out and "REFUSED" not in out
    p.ok("check", "--offline")


def test_a_malformed_policy_is_a_usage_error(tmp_path):
    p = build_churn(tmp_path / "p", "dvc")
    y = p.root / "dvc.yaml"
    y.write_text(y.read_text().replace("        smoke: false\n", "        smoke: false\n        signing:\n"
                                       "          environments: {production: {require_signed: yes please}}\n"))
    res = p.tether("status")
    assert res.code == 2 and "meta.tether.signing.environments.production.require_signed" in res.err, res.err
