"""`tether hook pre-receive` in a real bare repository, judged by real `git push`es from
clones (issue 14, item 3): release tags never move, environments move only forward by valid,
signed tether moves, release tags must be complete and on the DVC remote, and two clones
racing to move production still have exactly one winner."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from project import BIN, Project
from shapes import clone, retrain_churn
from signhelp import LEAD, forge_move

ZERO = "0" * 40


def install_hook(p: Project, tmp_path: Path) -> Path:
    """The hook, installed the way the README says, with a DVC project for the remote check."""
    dvc = tmp_path / "hook-dvc"
    dvc.mkdir()
    p.sh(os.path.join(BIN, "dvc"), "init", "-q", "--no-scm", cwd=dvc)
    p.sh(os.path.join(BIN, "dvc"), "remote", "add", "-d", "team", str(p.store), cwd=dvc)
    res = p.ok("hook", "install", str(p.origin), "--dvc-repo", str(dvc))
    hook = p.origin / "hooks/pre-receive"
    assert f"installed {hook}" in res.out and os.access(hook, os.X_OK)
    return dvc


def origin_refs(p: Project) -> str:
    return p.sh("git", "for-each-ref", cwd=p.origin).out


def push(p: Project, *args: str, cwd: Path | None = None):
    return p.sh("git", "push", "--porcelain", "origin", *args, cwd=cwd, check=False)


@pytest.fixture
def hooked(signed, tmp_path):
    p, keys = signed
    install_hook(p, tmp_path)
    return p, keys


def test_a_signed_promotion_goes_through_the_hook(hooked):
    p, _keys = hooked
    res = p.ok("promote", "churn@v1.1.0", "--env", "production", "--sign", *LEAD, "--push")
    assert "pushed" in res.out
    assert p.sh("git", "rev-parse", "production", cwd=p.origin).out.strip() == p.git("rev-parse", "production")


@pytest.mark.parametrize("case", ["move-tag", "delete-tag", "non-fast-forward", "delete-env", "unsigned",
                                  "unknown-key", "approver-lies", "wrong-tree", "no-trailers", "new-env-at-main"])
def test_the_hook_refuses_and_nothing_moves_on_the_server(hooked, case):
    p, keys = hooked
    before = origin_refs(p)
    if case == "move-tag":
        p.git("tag", "-f", "-a", "-m", "moved", "churn@v1.0.0", "churn@v1.1.0^{commit}")
        res, why = push(p, "--force", "refs/tags/churn@v1.0.0"), "release tags never change: refusing to move"
    elif case == "delete-tag":
        res, why = push(p, ":refs/tags/churn@v1.0.0"), "refusing to delete churn@v1.0.0"
    elif case == "non-fast-forward":
        res, why = push(p, "--force", "staging~1:staging"), "non-fast-forward update of staging"
    elif case == "delete-env":
        res, why = push(p, ":production"), "refusing to delete production"
    elif case in ("unsigned", "unknown-key", "approver-lies"):
        key = {"unsigned": None, "unknown-key": keys["rogue"], "approver-lies": keys["lead"]}[case]
        who = "ceo@example.com" if case == "approver-lies" else "lead@example.com"
        bad = forge_move(p, "production", "churn@v1.1.0", approver=who, key=key, push=False)
        res = push(p, "production")
        why = {"unsigned": f"move {bad[:12]} unsigned, and a signature is required",
               "unknown-key": "by a key that is not in the allowed signers file",
               "approver-lies": "Tether-Approver says 'ceo@example.com' but the move is signed by lead@example.com"}[case]
    elif case == "wrong-tree":
        forge_move(p, "production", "churn@v1.1.0", approver="lead@example.com", key=keys["lead"], push=False,
                   tree_of="churn@v1.0.0")
        res, why = push(p, "production"), "has a tree that is not churn@v1.1.0's tree"
    elif case == "new-env-at-main":  # a branch tether never moved, created at a commit the server has
        p.git("branch", "-f", "staging", "main")
        p.sh("git", "update-ref", "-d", "refs/heads/staging", cwd=p.origin)  # as if staging never existed
        before = origin_refs(p)
        res, why = push(p, "staging"), "lacks tether's trailers"
    else:
        head = p.git("rev-parse", "production")
        new = p.sh("git", "commit-tree", "-S", f"{head}^{{tree}}", "-p", head, "-m", "hotfix by hand").out.strip()
        p.git("update-ref", "refs/heads/production", new)
        res, why = push(p, "production"), "lacks tether's trailers"
    assert res.code != 0 and "pre-receive hook declined" in res.err + res.out, res.err
    assert why in res.err, res.err
    assert origin_refs(p) == before


def test_the_hook_itself_exits_6_and_reads_git_s_protocol(hooked):
    p, _keys = hooked
    tag = p.git("rev-parse", "refs/tags/churn@v1.0.0")
    lines = f"{tag} {ZERO} refs/tags/churn@v1.0.0\n"
    env = {**p.env(), "GIT_DIR": str(p.origin)}
    proc = subprocess.run([os.path.join(BIN, "tether"), "hook", "pre-receive"], input=lines, text=True,
                          capture_output=True, cwd=p.origin, env=env)
    assert proc.returncode == 6 and "refusing to delete churn@v1.0.0" in proc.stderr, proc.stderr
    proc = subprocess.run([os.path.join(BIN, "tether"), "hook", "pre-receive"], input="garbage\n", text=True,
                          capture_output=True, cwd=p.origin, env=env)
    assert proc.returncode == 2 and "expected '<old> <new> <ref>'" in proc.stderr


def test_a_release_tag_must_be_signed_and_on_the_dvc_remote(hooked):
    p, keys = hooked
    retrain_churn(p, 3)
    p.git("push", "-q", "origin", "main")
    p.git("tag", "-a", "-m", "unsigned", "churn@v1.2.0")
    res = push(p, "refs/tags/churn@v1.2.0")
    assert "pre-receive hook declined" in res.out + res.err and "the tag is unsigned" in res.err, res.err
    p.git("tag", "-d", "churn@v1.2.0")
    p.git("tag", "-s", "-m", "signed, objects not pushed", "churn@v1.2.0")
    res = push(p, "refs/tags/churn@v1.2.0")
    assert "not on the DVC remote: models/churn.pkl" in res.err, res.err
    assert "churn@v1.2.0" not in origin_refs(p)
    p.dvc("push", "-q")
    res = push(p, "refs/tags/churn@v1.2.0")
    assert res.code == 0, res.err
    assert "churn@v1.2.0" in origin_refs(p)


def test_a_push_race_between_two_clones_has_exactly_one_winner(hooked, tmp_path):
    """Both clones make a valid signed move from the same production head, then push at the
    same moment: git's ref update is a compare-and-swap behind the hook, so one lands."""
    p, keys = hooked
    clones = []
    for name in ("a", "b"):
        root = clone(p, tmp_path / name)
        c = Project(tmp_path / name)
        c.root = root
        c.git("config", "gpg.format", "ssh")
        c.git("config", "user.signingkey", str(keys["lead"]))
        c.git("fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*")
        c.git("branch", "-f", "production", "origin/production")
        c.git("branch", "-f", "staging", "origin/staging")
        c.ok("promote", "churn@v1.1.0", "--env", "production", "--sign", "--approver", "lead@example.com", "--reason", name)
        clones.append(c)
    procs = [subprocess.Popen(["git", "push", "--porcelain", "origin", "production"], cwd=c.root, env=c.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in clones]
    codes = [pr.wait(timeout=120) for pr in procs]
    assert sorted(codes) == [0, 1], [pr.stderr.read() for pr in procs]
    winner = clones[codes.index(0)]
    server = p.sh("git", "rev-parse", "production", cwd=p.origin).out.strip()
    assert server == winner.git("rev-parse", "production")
    log = p.sh("git", "log", "--first-parent", "--format=%H", "production", cwd=p.origin).out.split()
    loser = clones[codes.index(1)].git("rev-parse", "production")
    assert loser not in log
