"""Signed projects for the signing and hook tests: throwaway SSH keys (ssh-keygen), the churn
shape with a committed signing policy, and moves forged by hand the way an attacker would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from project import Project, isolated_home
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


def build_signed(tmp_path_factory):
    """churn with the policy, v1.0.0 released signed by the lead and promoted (signed) to
    staging and production; v1.1.0 released signed and promoted (signed) to staging. A
    generator for a session fixture (conftest.signed_base)."""
    base = tmp_path_factory.mktemp("signed")
    with isolated_home(tmp_path_factory, "signed"):
        keys = {n: keygen(base / n, n) for n in ("lead", "ops", "rogue")}
        p = build_churn(base / "p", "dvc")
        enable_signing(p, keys, {"lead@example.com": "lead", "ops@example.com": "ops"})
        p.ok("release", "--sign", "--push")
        p.ok("promote", "churn@v1.0.0", "--env", "staging", "--sign", *LEAD, "--push")
        p.ok("promote", "churn@v1.0.0", "--env", "production", "--sign", *LEAD, "--push")
        retrain_churn(p, 2)
        p.git("push", "-q", "origin", "main")
        p.ok("release", "--sign", "--push")
        p.ok("promote", "churn@v1.1.0", "--env", "staging", "--sign", *LEAD, "--push")
        yield p, keys


def copy_signed(signed_base, tmp_path: Path):
    """A private copy of the signed project, its origin and its DVC remote."""
    p0, keys = signed_base
    shutil.copytree(p0.base, tmp_path / "s", symlinks=True)
    p = Project(tmp_path / "s")
    p.git("remote", "set-url", "origin", str(p.origin))
    p.dvc("remote", "modify", "--local", "local", "url", str(p.store))
    p.git("config", "user.signingkey", str(keys["lead"]))
    return p, keys


def refs(p: Project) -> str:
    """Every ref of the clone and of its origin: what "nothing moved" compares."""
    return p.refs() + "\n" + p.sh("git", "for-each-ref", cwd=p.origin).out


def forge_move(p: Project, env: str, release: str, *, approver: str, key: Path | None, push: bool = True,
               tree_of: str | None = None) -> str:
    """A move commit made by hand, shaped exactly like tether's (its trailers copied from the
    environment's newest move), the local branch moved to it and (`push`) origin's, with force
    (no hook installed there). `tree_of` gives it another release's tree."""
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
    tree = f"{tree_of or release}^{{tree}}"
    proc = subprocess.run(["git", *conf, "commit-tree", *sign, tree, "-p", head, "-p", commit],
                          cwd=p.root, input=msg, capture_output=True, text=True, env=p.env(), check=True)
    new = proc.stdout.strip()
    p.git("update-ref", f"refs/heads/{env}", new)
    if push:
        p.git("push", "-q", "--force", "origin", f"{env}:{env}")
    return new


