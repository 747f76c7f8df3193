"""The read fast path (tether.cli.fastread): a read whose answer is kept for the ref state as it
is now prints exactly what the whole CLI prints, without importing typer; anything else (a miss,
an unusual command line, a refusal, an error) is left to the CLI, which answers afresh."""

from __future__ import annotations

import subprocess
import sys

import pytest
from shapes import build_churn, retrain_churn

from tether.cli import fastread
from tether.cli.fastread import Request, parse
from tether.adapters.gitrepo import Git
from tether.adapters.refindex import RefIndex
from tether.adapters.workspace import Workspace

FULL = "import sys\nsys.argv[0] = 'tether'\nfrom tether.cli.base import main\nmain()"  # the typer CLI alone


# -- the command lines it takes --------------------------------------------------------------
@pytest.mark.parametrize("argv, want", [
    (["list"], Request("list")),
    (["-C", "repo", "list", "--json"], Request("list", "repo", (("--json", True),))),
    (["status", "--model", "churn"], Request("status", ".", (("--model", "churn"),))),
    (["status", "--model=churn", "--json"], Request("status", ".", (("--json", True), ("--model", "churn")))),
    (["history", "--env", "production", "--at", "2026-01-01"],
     Request("history", ".", (("--at", "2026-01-01"), ("--env", "production")))),
    (["show", "production", "--json"], Request("show", ".", (("--json", True),), ("production",))),
    (["show", "--model", "churn", "churn@v1.0.0"], Request("show", ".", (("--model", "churn"),), ("churn@v1.0.0",))),
])
def test_plain_read_command_lines_are_parsed(argv, want):
    assert parse(argv) == want


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["list", "--help"], ["list", "-h"], ["--version"], ["--debug", "list"],
    ["deploy", "--env", "production"], ["release"], ["diff", "a", "b"],
    ["list", "churn"],  # the deprecated positional MODEL: the CLI prints its note
    ["list", "--json", "--json"], ["list", "--model", "a", "--model", "b"],  # given twice
    ["list", "--model"], ["list", "--model", "--json"],  # a value missing, or an option in its place
    ["list", "--json=1"], ["list", "--env", "production"], ["list", "--"], ["list", "-"],
    ["show"], ["show", "a", "b"], ["show", "-x"],
    ["-C"], ["-C", "--json", "list"], ["-C", "a", "-C", "b", "list"], ["-C", ".", "-C", "b", "list"], ["list", "-C", "a"],
])
def test_anything_else_is_left_to_the_cli(argv):
    assert parse(argv) is None


def test_the_fast_path_takes_only_options_its_typer_command_defines_alike():
    """Nothing the fast path accepts could be refused or read differently by the CLI."""
    import typer

    from tether.cli.base import app, register

    register()
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name, options in fastread.OPTIONS.items():
        params = {opt: p for p in commands[name].params for opt in p.opts}
        for opt, takes_value in options.items():
            assert opt in params, f"{name} {opt}"
            assert params[opt].is_flag is not takes_value, f"{name} {opt}"
        positional = [p for p in commands[name].params if p.param_type_name == "argument" and not p.hidden]
        assert len(positional) == fastread.POSITIONALS[name], name


# -- what it prints ---------------------------------------------------------------------------
def _two_models(tmp_path):
    """Two models in one repository, one kept with `dvc add` and one in git, released with
    `tether release` and with plain `git tag`, one promoted."""
    p = build_churn(tmp_path / "churn", second=True)
    p.ok("release", "--model", "churn", "--push")
    p.ok("release", "--model", "churn-lite", "--push")
    retrain_churn(p, 2)
    p.git("tag", "-a", "churn@v1.1.0", "-m", "by hand")
    p.dvc("push", "-q")
    p.git("push", "-q", "origin", "main", "churn@v1.1.0")
    p.ok("promote", "churn@v1.1.0", "--model", "churn", "--env", "production", "--approver", "a",
         "--reason", "r", "--skip-staging", "test")
    return p


READS = [
    ["list"], ["list", "--json"], ["list", "--model", "churn-lite"],
    ["status"], ["status", "--json", "--model", "churn"],
    ["history", "--model", "churn"], ["history", "--model", "churn", "--env", "production", "--json"],
    ["history", "--model", "churn", "--at", "2000-01-01T00:00:00Z"],
    ["show", "churn@latest"], ["show", "production", "--model", "churn", "--json"], ["show", "churn-lite@v1.0.0"],
]


def test_a_kept_answer_is_printed_byte_for_byte_as_the_cli_prints_it_and_without_typer(tmp_path):
    """In the repository, after a hand commit on its environment branch (ahead of origin), and
    in a fresh clone where the environment exists only on origin."""
    p = _two_models(tmp_path)
    p.git("push", "-q", "origin", "churn/production")
    clone = tmp_path / "clone"
    p.git("clone", "-q", str(p.origin), str(clone))
    p.git("worktree", "add", "-q", str(tmp_path / "wt"), "churn/production")
    (tmp_path / "wt/params.yaml").write_text("evaluate:\n  threshold: 0.9\nlite:\n  threshold: 0.4\n")
    p.git("commit", "-q", "-am", "hotfix by hand", cwd=tmp_path / "wt")
    notes = {"status": "committed outside tether", "history": "hotfix by hand"}
    for root in (p.root, clone):
        for argv in READS:
            full = p.sh(sys.executable, "-c", FULL, *argv, cwd=root, check=False)  # computes and keeps the answer
            kept = _files(root / ".git/tether")
            refused = root == p.root and argv[:2] == ["show", "production"]  # its head is no release
            assert full.code == (6 if refused else 0), (root, argv, full.err)
            assert (fastread.answer(["-C", str(root), *argv]) is None) == refused, (root, argv)  # kept: answered here
            fast = p.sh(sys.executable, "-X", "importtime", "-m", "tether.cli", *argv, cwd=root, check=False)
            assert (fast.code, fast.out) == (full.code, full.out), (root, argv)
            imported = {ln.split("|")[-1].strip() for ln in fast.err.splitlines() if ln.startswith("import time:")}
            assert ("typer" in imported) == refused and ("tether.cli.base" in imported) == refused, (root, argv)
            assert _files(root / ".git/tether") == kept, (root, argv)  # it wrote nothing
            if root == p.root and argv in (["status"], ["history", "--model", "churn"]):
                assert notes[argv[0]] in fast.out, fast.out  # the hand commit is shown
        if root == clone:
            assert "from origin/churn/production; no local branch" in p.sh(
                sys.executable, "-m", "tether.cli", "status", cwd=root).out


def _files(root) -> dict:
    return {f: f.stat().st_mtime_ns for f in root.rglob("*")}


def test_only_the_answer_kept_for_the_ref_state_as_it_is_now_is_printed(tmp_path):
    """A new tag is a miss (the CLI answers afresh and keeps it); a view kept under any other key
    (a forged one here) is never read; a history the signing policy refuses is kept (the refusal
    is part of the answer) but only the CLI may print it, because it must then exit 6."""
    from tether.registry import views

    p = _two_models(tmp_path)
    p.ok("list", "--json")
    assert [r["tag"] for r in fastread_rows(p)][:1] == ["churn@v1.1.0"]
    retrain_churn(p, 3)
    p.git("tag", "-a", "churn@v1.2.0", "-m", "by hand")  # a new tag: the kept answer is for another state
    assert fastread.answer(["-C", str(p.root), "list", "--json"]) is None
    res = p.tether("list", "--json")
    assert res.code == 0 and res.json()[0]["tag"] == "churn@v1.2.0"
    assert fastread_rows(p)[0]["tag"] == "churn@v1.2.0"  # and now kept for the new state
    p.git("tag", "-d", "churn@v1.2.0")  # a state neither kept answer is for (main moved since the first)
    assert fastread.answer(["-C", str(p.root), "list", "--json"]) is None
    assert p.ok("list", "--json").json()[0]["tag"] == "churn@v1.1.0"

    RefIndex(Git(p.root)).keep_view("list", "0" * 64, [["churn", "9.9.9", "churn@v9.9.9", "", "", "", True, "", "", {}]])
    assert "churn@v9.9.9" not in (fastread.answer(["-C", str(p.root), "list"]) or "")

    ws = Workspace.discover(p.root)
    _signers, (index, key, _) = views._kept_history(ws, "churn", None)
    answer = views.env_history(ws, "churn", None, None)
    assert fastread.answer(["-C", str(p.root), "history", "--model", "churn"]) is not None
    index.keep_view("history", key, {**answer, "refused": "production: a move is signed by nobody allowed"})
    assert fastread.answer(["-C", str(p.root), "history", "--model", "churn"]) is None
    res = p.tether("history", "--model", "churn")
    assert res.code == 6 and "signed by nobody allowed" in res.err
    assert "production (branch churn/production)" in res.out


def fastread_rows(p) -> list[dict]:
    import json

    out = fastread.answer(["-C", str(p.root), "list", "--json"])
    assert out is not None
    return json.loads(out)


def test_no_repository_or_no_dvc_yaml_is_the_clis_error(tmp_path):
    (tmp_path / "plain").mkdir()
    subprocess.run(["git", "init", "-q", str(tmp_path / "plain")], check=True)
    for where in (tmp_path, tmp_path / "plain", tmp_path / "missing"):
        assert fastread.answer(["-C", str(where), "list"]) is None
        proc = subprocess.run([sys.executable, "-m", "tether.cli", "-C", str(where), "list"], capture_output=True,
                              text=True)
        assert proc.returncode != 0 and proc.stderr.startswith("error: "), proc.stderr
