"""Atomic multi-moves (issue 33, item 1): `tether promote --env E a@v1 b@v1` moves both
environment branches or neither, locally (one `update-ref --stdin` transaction) and on origin
(one `git push --atomic`). A failing gate for one, a concurrent move of the other and a kill -9
during the push each leave both where they were; a grouped move is rolled back as a group.
On the churn shape with two models in one repository (`churn`, `churn-lite`)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project import Project
from shapes import build_churn, clone, retrain_churn

from tether.adapters.workspace import Workspace
from tether.errors import Conflict

BRANCHES = ("churn/staging", "churn-lite/staging")
ARGS = ("--env", "staging", "--approver", "lead", "--reason", "together")


def _live(p: Project, model: str) -> str:
    shown = p.ok("show", "staging", "--model", model, "--json").json()
    return f"{shown['model']}@v{shown['version']}"


def _heads(p: Project, where: Path | None = None) -> dict[str, str | None]:
    out = {}
    for b in BRANCHES:
        res = p.sh("git", "rev-parse", "--verify", "-q", f"refs/heads/{b}", cwd=where or p.root, check=False)
        out[b] = res.out.strip() or None
    return out


@pytest.fixture
def two(tmp_path) -> Project:
    p = build_churn(tmp_path / "c", "dvc", second=True)
    p.ok("release", "churn", "--push")
    p.ok("release", "churn-lite", "--push")
    return p


def test_two_models_promoted_together_move_together_and_roll_back_as_a_group(two):
    p = two
    res = p.ok("promote", "churn@v1.0.0", "churn-lite@v1.0.0", *ARGS, "--push")
    assert "moved 2 branches as one" in res.out and "pushed atomically" in res.out, res.out
    local, origin = _heads(p), _heads(p, p.origin)
    assert None not in local.values() and local == origin
    groups = {p.git("log", "-1", "--format=%(trailers:key=Tether-Group,valueonly)", b).strip() for b in BRANCHES}
    assert len(groups) == 1 and groups.pop().startswith("g-")
    hist = p.ok("history", "--env", "staging", "--model", "churn-lite", "--json").json()
    assert hist["environments"]["staging"]["events"][0]["trailers"]["Tether-Group"].startswith("g-")

    # a second pair of releases, promoted together; rolling back one model rolls back the group
    retrain_churn(p, 2, "dvc")
    retrain_churn(p, 2, "dvc", model="churn-lite")
    p.git("push", "-q", "origin", "main")
    p.ok("release", "churn", "--push")
    p.ok("release", "churn-lite", "--push")
    p.ok("promote", "churn@v1.1.0", "churn-lite@v1.1.0", *ARGS, "--push")
    res = p.ok("rollback", "--env", "staging", "--model", "churn", "--approver", "lead", "--reason", "bad pair",
               "--push")
    assert "rolling back the group" in res.err and "moved 2 branches as one (rollback" in res.out, res.out + res.err
    shown = {m: _live(p, m) for m in ("churn", "churn-lite")}
    assert shown == {"churn": "churn@v1.0.0", "churn-lite": "churn-lite@v1.0.0"}
    assert _heads(p) == _heads(p, p.origin)
    # --only: one model alone
    p.ok("promote", "churn@v1.1.0", "churn-lite@v1.1.0", *ARGS)
    p.ok("rollback", "--env", "staging", "--model", "churn", "--only", "--approver", "lead", "--reason", "one")
    shown = {m: _live(p, m) for m in ("churn", "churn-lite")}
    assert shown == {"churn": "churn@v1.0.0", "churn-lite": "churn-lite@v1.1.0"}


def test_a_failing_gate_for_one_moves_neither(two):
    """churn was in staging, churn-lite was not: production's staging-first gate refuses
    churn-lite, so churn does not move either."""
    p = two
    p.ok("promote", "churn@v1.0.0", *ARGS, "--push")
    prod = ("churn/production", "churn-lite/production")

    def heads(where):
        return {b: p.sh("git", "rev-parse", "--verify", "-q", f"refs/heads/{b}", cwd=where, check=False).out.strip()
                for b in prod}

    before, origin = heads(p.root), heads(p.origin)
    res = p.tether("promote", "churn@v1.0.0", "churn-lite@v1.0.0", "--env", "production", "--approver", "lead",
                   "--reason", "together", "--push")
    assert res.code == 5 and "churn-lite" in res.err and "staging" in res.err, (res.code, res.err)
    assert heads(p.root) == before == {b: "" for b in prod} and heads(p.origin) == origin


def test_a_concurrent_move_of_the_other_leaves_both_untouched(two, tmp_path):
    """Plan both moves, let a teammate push a move of churn-lite, then execute: the atomic push
    is rejected as a whole, and no local branch moves."""
    from tether.commands.move_group import execute_group, plan_group

    p = two
    retrain_churn(p, 2, "dvc", model="churn-lite")
    p.git("push", "-q", "origin", "main")
    p.ok("release", "churn-lite", "--push")
    ws = Workspace.discover(p.root)
    plans = plan_group(ws, action="promote", env="staging", refs=["churn@v1.0.0", "churn-lite@v1.0.0"],
                       models=[None, None], approver="lead", reason="together", push=True)
    mate = clone(p, tmp_path / "mate")
    p.ok("promote", "churn-lite@v1.1.0", "--env", "staging", "--approver", "mate", "--reason", "mine", "--push",
         cwd=mate)
    origin = _heads(p, p.origin)
    assert origin["churn/staging"] is None and origin["churn-lite/staging"]
    with pytest.raises(Conflict):
        execute_group(ws, plans)
    assert _heads(p, p.origin) == origin, "origin moved churn's branch though the group's push was rejected"
    assert _heads(p) == {"churn/staging": None, "churn-lite/staging": None}


def test_the_local_transaction_moves_every_ref_or_none(two):
    p = two
    ws = Workspace.discover(p.root)
    a = p.git("rev-parse", "HEAD")
    b = p.git("commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", "another commit")
    p.git("branch", "x", a)
    with pytest.raises(Conflict, match="none of them was moved"):
        ws.git.update_refs([("refs/heads/y", b, None), ("refs/heads/x", b, b)], "test")  # x is not at b
    assert p.git("rev-parse", "x") == a
    assert p.sh("git", "rev-parse", "--verify", "-q", "refs/heads/y", check=False).code != 0
    ws.git.update_refs([("refs/heads/y", b, None), ("refs/heads/x", b, a)], "test")
    assert p.git("rev-parse", "x") == p.git("rev-parse", "y") == b


def test_kill_9_during_the_atomic_push_leaves_all_or_nothing_on_origin(two, tmp_path):
    p = two
    seen = set()
    for i, delay in enumerate((0.15, 0.35, 0.55, 0.75, 0.95, 1.3)):  # the whole command takes about a second
        root = tmp_path / f"round{i}"
        shutil.copytree(p.base, root, symlinks=True)
        q = Project(root)
        q.git("remote", "set-url", "origin", str(q.origin))
        q.dvc("remote", "add", "--local", "-f", "-d", "local", str(q.store))
        proc = subprocess.Popen([sys.executable, "-m", "tether.cli", "promote", "churn@v1.0.0", "churn-lite@v1.0.0",
                                 *ARGS, "--push"], cwd=q.root, env=q.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        origin = _heads(q, q.origin)
        moved = [v is not None for v in origin.values()]
        assert all(moved) or not any(moved), f"round {i}: origin moved one branch of the group: {origin}"
        seen.add(all(moved))
    print("outcomes (moved?):", seen)
    assert seen, "no round ran"
