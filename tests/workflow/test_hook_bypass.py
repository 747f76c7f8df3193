"""The pre-receive hook cannot be walked around (issue 27, items 1-4): real `git push`es from
clones into a bare repository with the hook installed, each bypass the issue names, pushes of
several refs at once, deletions, force-pushes and tags that move. The churn shape (a model
kept with `dvc add`, signed releases and moves) unless a test says otherwise."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from project import BIN, Project
from shapes import build_churn, clone
from signhelp import LEAD

ZERO = "0" * 40


def install_hook(p: Project, *extra: str) -> str:
    res = p.ok("hook", "install", str(p.origin), *extra)
    assert f"installed {p.origin / 'hooks/pre-receive'}" in res.out, res.out
    return res.out


def origin_refs(p: Project) -> str:
    return p.sh("git", "for-each-ref", cwd=p.origin).out


def push(p: Project, *args: str, cwd: Path | None = None):
    return p.sh("git", "push", "--porcelain", "origin", *args, cwd=cwd, check=False)


def refused(res, why: str) -> None:
    assert res.code != 0 and "pre-receive hook declined" in res.out + res.err, res.out + res.err
    assert why in res.err, res.err


def teammate(p: Project, dest: Path, key: Path | None = None) -> Project:
    """A fresh clone of the bare origin with the environment branches and the DVC objects pulled:
    the path a teammate takes."""
    c = Project(dest)
    dest.mkdir(parents=True)
    c.root = clone(p, dest / "project")
    c.origin, c.store = p.origin, p.store
    for b in ("staging", "production"):
        if p.sh("git", "rev-parse", "-q", "--verify", f"refs/heads/{b}", cwd=p.origin, check=False).code == 0:
            c.git("branch", "-f", b, f"origin/{b}")
    c.git("fetch", "-q", "origin", "+refs/tags/*:refs/tags/*")
    c.dvc("pull", "-q")
    if key is not None:
        c.git("config", "gpg.format", "ssh")
        c.git("config", "user.signingkey", str(key))
    return c


def move_commit(p: Project, env: str, release: str, parents: list[str], *, previous: str, key: Path | None,
                action: str = "promote", approver: str = "lead@example.com") -> str:
    """A move made by hand with every trailer tether writes and the parents given (an attacker's
    commit: valid trailers, any parents, any Tether-Previous)."""
    tag_obj = p.git("rev-parse", f"refs/tags/{release}")
    trailers = {"Tether-Action": action, "Tether-Release": release, "Tether-Tag-Object": tag_obj,
                "Tether-Previous": previous, "Tether-Approver": approver, "Tether-Reason": "by hand",
                "Tether-Time": "2026-01-01T00:00:00+00:00"}
    msg = f"{action} {env} to {release}\n\nby hand\n\n" + "".join(f"{k}: {v}\n" for k, v in trailers.items())
    conf = ["-c", f"user.signingkey={key}"] if key else []
    args = ["git", *conf, "commit-tree", *(["-S"] if key else []), f"{release}^{{tree}}"]
    for parent in parents:
        args += ["-p", parent]
    new = subprocess.run(args, cwd=p.root, input=msg, capture_output=True, text=True, env=p.env(),
                         check=True).stdout.strip()
    p.git("update-ref", f"refs/heads/{env}", new)
    return new


def first_parent_moves(p: Project, branch: str, cwd: Path | None = None) -> list[str]:
    return p.sh("git", "log", "--first-parent", "--format=%H", branch, cwd=cwd or p.origin).out.split()


@pytest.fixture
def hooked(signed):
    """The signed churn project: v1.0.0 live in production, v1.1.0 in staging (after v1.0.0),
    every move signed by the lead, the hook installed on its origin."""
    p, keys = signed
    install_hook(p)
    return p, keys


# -- item 1: the append-only rule is the first-parent chain ------------------------------------

def _rewrite(c: Project, keys: dict, shape: str) -> tuple[str, str]:
    """staging holds [promote v1.0.0 (F), promote v1.1.0 (tip)]; a commit that fast-forwards it."""
    tip = c.git("rev-parse", "staging")
    first = c.git("rev-list", "--first-parent", "--grep=^Tether-Action: ", "staging").split()[-1]
    v10 = c.git("rev-parse", "churn@v1.0.0^{commit}")
    if shape == "hide":  # the commit: parents [first move, old tip, release], a false previous
        return move_commit(c, "staging", "churn@v1.0.0", [first, tip, v10], previous="none", key=keys["lead"]), \
            f"its old tip {tip[:12]} must stay on the first-parent chain"
    if shape == "extra-parent":  # the old tip first, but a third parent carried along
        return move_commit(c, "staging", "churn@v1.0.0", [tip, first, v10], previous="churn@v1.1.0",
                           key=keys["lead"]), "has 3 parents"
    # the right parents, a Tether-Previous that lies about what it replaced
    return move_commit(c, "staging", "churn@v1.0.0", [tip, v10], previous="churn@v0.9.0", key=keys["lead"]), \
        "records Tether-Previous 'churn@v0.9.0', but the environment held 'churn@v1.1.0' before it"


@pytest.mark.parametrize("shape", ["hide", "extra-parent", "false-previous"])
def test_a_fast_forward_that_rewrites_history_is_refused_from_a_teammate_s_clone(hooked, tmp_path, shape):
    p, keys = hooked
    c = teammate(p, tmp_path / "mate", keys["lead"])
    before = origin_refs(p)
    history = p.ok("history", "--env", "staging", "--json").out
    new, why = _rewrite(c, keys, shape)
    assert c.sh("git", "merge-base", "--is-ancestor", "origin/staging", new).code == 0  # a fast-forward
    refused(push(c, "staging", cwd=c.root), why)
    assert origin_refs(p) == before
    # every clone still reads the whole history
    fresh = teammate(p, tmp_path / "again")
    assert fresh.ok("history", "--env", "staging", "--json").out == history


def test_several_moves_in_one_push_each_name_the_one_before(hooked, tmp_path):
    """A teammate promotes and rolls back without pushing, then pushes both moves and their GTO
    tags at once: accepted, and the chain holds every move. The same push with a third move on
    top whose Tether-Previous skips the move just before it is refused whole."""
    p, keys = hooked
    c = teammate(p, tmp_path / "mate", keys["lead"])
    c.ok("promote", "churn@v1.1.0", "--env", "production", "--sign", *LEAD)
    c.ok("rollback", "--env", "production", "--sign", *LEAD)
    honest = c.git("rev-parse", "production")
    v11 = c.git("rev-parse", "churn@v1.1.0^{commit}")
    move_commit(c, "production", "churn@v1.1.0", [honest, v11], previous="churn@v1.1.0", key=keys["lead"])
    before = origin_refs(p)
    refused(push(c, "production", "--tags", cwd=c.root),
            "records Tether-Previous 'churn@v1.1.0', but the environment held 'churn@v1.0.0' before it")
    assert origin_refs(p) == before
    c.git("update-ref", "refs/heads/production", honest)
    res = push(c, "production", "--tags", cwd=c.root)
    assert res.code == 0, res.err
    moves = first_parent_moves(p, "production")
    assert moves[0] == honest
    said = [p.sh("git", "log", "-1", "--format=%(trailers:key=Tether-Previous,valueonly)", m, cwd=p.origin).out.strip()
            for m in moves[:2]]
    assert said == ["churn@v1.1.0", "churn@v1.0.0"]


def test_a_bad_ref_in_a_multi_ref_push_refuses_all_of_it(hooked):
    """A valid signed move and an unsigned GTO tag in one push: nothing lands."""
    p, keys = hooked
    p.ok("promote", "churn@v1.1.0", "--env", "production", "--sign", *LEAD)  # valid, not pushed
    _gto_tag(p, "churn#staging#77", p.git("rev-parse", "churn@v1.0.0^{commit}"), None)
    before = origin_refs(p)
    res = push(p, "production", "refs/tags/churn#staging#77")
    refused(res, "GTO tag churn#staging#77 is unsigned")
    assert "refs/heads/production" in res.out and "refs/tags/churn#staging#77" in res.out
    assert origin_refs(p) == before


def test_check_reports_a_history_rewritten_before_the_hook(signed, tmp_path):
    """No hook yet: the rewrite lands. `tether check` in a fresh clone names it (exit 6)."""
    p, keys = signed
    c = teammate(p, tmp_path / "mate", keys["lead"])
    clean = c.tether("check")
    assert clean.code == 0, clean.out + clean.err
    new, _ = _rewrite(c, keys, "hide")
    assert push(c, "staging", cwd=c.root).code == 0
    fresh = teammate(p, tmp_path / "fresh")
    res = fresh.tether("check")
    assert res.code == 6, res.out + res.err
    assert "staging: hidden-moves: 1 move(s)" in res.out and f"commit {new[:12]} merged them" in res.out, res.out
    assert fresh.tether("check", "--json").json()["findings"][0]["kind"] == "hidden-moves"


# -- item 2: a policy that always resolves ------------------------------------------------------

@pytest.fixture
def master_headed(tmp_path):
    """A churn project whose bare origin was made with git's stock default (HEAD -> master) and
    only ever received main, staging and production (no signing policy: the structural rules)."""
    p = build_churn(tmp_path / "c", "dvc")
    p.sh("rm", "-rf", str(p.origin))
    p.git("-c", "init.defaultBranch=master", "init", "-q", "--bare", str(p.origin))
    p.git("push", "-q", "origin", "main")
    p.ok("release", "--push")
    p.ok("promote", "churn@v1.0.0", "--env", "staging", "--approver", "ci", "--reason", "t", "--push")
    p.ok("promote", "churn@v1.0.0", "--env", "production", "--approver", "ci", "--reason", "t", "--push")
    assert p.sh("git", "rev-parse", "--verify", "-q", "HEAD", cwd=p.origin, check=False).code != 0
    return p


def test_install_refuses_when_head_does_not_resolve_and_names_the_fix(master_headed):
    p = master_headed
    res = p.tether("hook", "install", str(p.origin))
    assert res.code == 3, res.out + res.err
    assert "HEAD names 'master', which does not exist" in res.err and "--branch main" in res.err, res.err
    assert not (p.origin / "hooks/pre-receive").exists()
    res = p.tether("hook", "install", str(p.origin), "--branch", "nope")
    assert res.code == 3 and "branch 'nope' does not exist" in res.err, res.err
    res = p.tether("hook", "install", str(p.origin), "--branch", "a..b")
    assert res.code == 2 and "is not a branch name" in res.err, res.err
    assert not (p.origin / "hooks/pre-receive").exists()


@pytest.mark.parametrize("case", ["delete-env", "hand-commit", "delete-policy-branch"])
def test_with_the_branch_named_at_install_every_rule_holds(master_headed, case):
    p = master_headed
    out = install_hook(p, "--branch", "main")
    assert "--policy-branch main" in out and "'--policy-branch' 'main'" in (p.origin / "hooks/pre-receive").read_text()
    before = origin_refs(p)
    if case == "delete-env":
        res, why = push(p, ":production"), "refusing to delete production"
    elif case == "hand-commit":
        head = p.git("rev-parse", "staging")
        new = p.git("commit-tree", f"{head}^{{tree}}", "-p", head, "-m", "hotfix by hand")
        p.git("update-ref", "refs/heads/staging", new)
        res, why = push(p, "staging"), "lacks tether's trailers"
    else:
        res, why = push(p, ":main"), "the hook reads tether's policy from this branch: refusing to delete it"
    refused(res, why)
    assert origin_refs(p) == before


def test_a_hook_without_a_policy_branch_refuses_every_push(master_headed):
    """A hook written by an older install (no --policy-branch) in a repository whose HEAD does
    not resolve: it refuses, saying why, rather than judging by no rule at all."""
    p = master_headed
    hook = p.origin / "hooks/pre-receive"
    hook.write_text("#!/bin/sh\n# installed by `tether hook install`: tether's rules for releases and environments\n"
                    f"exec '{os.path.join(BIN, 'tether')}' 'hook' 'pre-receive'\n")  # what install wrote before
    hook.chmod(0o755)
    before = origin_refs(p)
    res = push(p, ":production")
    refused(res, "HEAD names 'master', which does not exist, so the hook has no policy to read")
    assert origin_refs(p) == before
    p.sh("git", "symbolic-ref", "HEAD", "refs/heads/master", cwd=p.origin)
    # the fix: re-install naming the branch; tether's own older hook is replaced without --force
    install_hook(p, "--branch", "main")
    assert "'--policy-branch' 'main'" in hook.read_text()
    refused(push(p, ":production"), "refusing to delete production")
    assert origin_refs(p) == before
    hook.write_text("#!/bin/sh\nexit 0\n")  # someone else's hook still needs --force
    res = p.tether("hook", "install", str(p.origin), "--branch", "main")
    assert res.code == 4 and "exists and is not tether's" in res.err, res.err


# -- item 3: GTO's tags under a signing policy --------------------------------------------------

def _gto_tag(p: Project, name: str, target: str, key: Path | None, when: str | None = None) -> None:
    env = {"GIT_COMMITTER_DATE": when} if when else None
    conf = ["-c", f"user.signingkey={key}"] if key else []
    p.sh("git", *conf, "tag", "-f", "-s" if key else "-a", "-m", f"{name} by hand", name, target, env=env)


@pytest.mark.parametrize("case", ["unsigned-future", "rogue-key", "ops-for-production", "deprecate", "deregister"])
def test_a_gto_tag_the_policy_does_not_allow_is_refused(hooked, case):
    p, keys = hooked
    v11 = p.git("rev-parse", "churn@v1.1.0^{commit}")
    name, key, why = {
        "unsigned-future": ("churn#production#99", None, "GTO tag churn#production#99 is unsigned, and a signature "
                            "is required (the signing policy's rule for environment production)"),
        "rogue-key": ("churn#staging#99", keys["rogue"], "by a key that is not in the allowed signers file"),
        "ops-for-production": ("churn#production#99", keys["ops"], "signed by ops@example.com, who is not allowed here"),
        "deprecate": ("churn@deprecated", None, "GTO tag churn@deprecated is unsigned"),
        "deregister": ("churn@v1.0.0!", None, "GTO tag churn@v1.0.0! is unsigned"),
    }[case]
    _gto_tag(p, name, v11, key, when="@4102444800 +0000")  # 2100-01-01: it would win GTO's order forever
    before = origin_refs(p)
    refused(push(p, f"refs/tags/{name}"), why)
    assert origin_refs(p) == before
    if case == "rogue-key":  # the same tag signed by a signer staging allows goes through
        _gto_tag(p, name, v11, keys["ops"])
        res = push(p, f"refs/tags/{name}")
        assert res.code == 0, res.err
        assert f"refs/tags/{name}" in origin_refs(p)


def test_tether_s_own_gto_tag_rides_with_its_signed_move(hooked, tmp_path):
    """promote --push sends the move and its (unsigned) GTO tag together: the signed move that
    names it in Tether-Gto-Tag vouches for it. The same tag name pointed elsewhere is refused."""
    p, keys = hooked
    c = teammate(p, tmp_path / "mate", keys["lead"])
    c.ok("promote", "churn@v1.1.0", "--env", "production", "--sign", *LEAD)
    gto = c.sh("git", "log", "-1", "--format=%(trailers:key=Tether-Gto-Tag,valueonly)", "production").out.strip()
    assert gto.startswith("churn#production#")
    # the same name on another commit, unsigned: not what the move recorded
    good = c.git("rev-parse", f"refs/tags/{gto}")
    c.git("tag", "-f", "-a", "-m", "elsewhere", gto, "churn@v1.0.0^{commit}")
    before = origin_refs(p)
    refused(push(c, "production", f"refs/tags/{gto}", cwd=c.root), f"GTO tag {gto} is unsigned")
    assert origin_refs(p) == before
    c.git("update-ref", f"refs/tags/{gto}", good)
    res = push(c, "production", f"refs/tags/{gto}", cwd=c.root)
    assert res.code == 0, res.err
    assert f"refs/tags/{gto}" in origin_refs(p)
    assert p.ok("history", "--env", "production", "--json").json()


@pytest.mark.parametrize("case", ["move", "delete"])
def test_gto_tags_on_the_server_never_move_under_the_policy(hooked, case):
    p, keys = hooked
    tags = [t for t in p.sh("git", "tag", "--list", "churn#staging#*", cwd=p.origin).out.split()]
    assert tags, "the signed project's promotes wrote GTO tags"
    name = tags[0]
    before = origin_refs(p)
    if case == "move":
        _gto_tag(p, name, p.git("rev-parse", "churn@v1.1.0^{commit}"), keys["lead"])
        res = push(p, "--force", f"refs/tags/{name}")
    else:
        res = push(p, f":refs/tags/{name}")
    refused(res, f"refusing to {case} {name}")
    assert origin_refs(p) == before


def test_the_hook_refuses_a_new_branch_whose_first_move_has_a_parent_beside_it(hooked, tmp_path):
    """A new environment branch starts with a move whose only parent is the release's commit."""
    p, keys = hooked
    s = p.root / "dvc.yaml"
    assert "production" in s.read_text()
    main = p.git("rev-parse", "main")
    v10 = p.git("rev-parse", "churn@v1.0.0^{commit}")
    p.sh("git", "update-ref", "-d", "refs/heads/staging", cwd=p.origin)  # as if staging never existed
    before = origin_refs(p)
    move_commit(p, "staging", "churn@v1.0.0", [main, v10], previous="none", key=keys["lead"])
    refused(push(p, "--force", "staging"), "has 2 parents; a move's parents are [the release's commit]")
    assert origin_refs(p) == before
    move_commit(p, "staging", "churn@v1.0.0", [v10], previous="none", key=keys["lead"])
    res = push(p, "--force", "staging")
    assert res.code == 0, res.err


def test_the_reference_project_through_the_hook_new_branch_moves_then_a_hidden_rewrite(project_live):
    """The reference project (no signing policy): production created by its first move, a
    promote and a rollback pushed through the hook, then the issue's rewrite refused."""
    from project import threshold_release

    p = project_live
    install_hook(p)
    res = push(p, "production")  # a new branch: its one move has the release commit as its only parent
    assert res.code == 0, res.err
    tag = threshold_release(p, 0.55)
    p.ok("promote", tag, "--env", "production", "--approver", "ci", "--reason", "t", "--skip-staging", "t",
         "--allow-regression", "t", "--push")
    p.ok("rollback", "--env", "production", "--approver", "ci", "--reason", "t", "--push")
    tip = p.git("rev-parse", "production")
    first = p.git("rev-list", "--first-parent", "--grep=^Tether-Action: ", "production").split()[-1]
    v10 = p.git("rev-parse", "fraud-detector@v1.0.0^{commit}")
    history = p.ok("history", "--env", "production", "--json").out
    move_commit(p, "production", "fraud-detector@v1.0.0", [first, tip, v10], previous="none", key=None,
                approver="ci")
    before = origin_refs(p)
    refused(push(p, "production"), f"its old tip {tip[:12]} must stay on the first-parent chain")
    assert origin_refs(p) == before
    p.git("update-ref", "refs/heads/production", tip)
    assert p.ok("history", "--env", "production", "--json").out == history
