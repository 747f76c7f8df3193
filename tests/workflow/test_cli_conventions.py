"""The conventions users expect of a command-line tool: -h and --help everywhere, help text on
every command, argument and option, --version, and shell completion."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
import typer
import typer.testing

from project import BIN, promote_to
from tether.cli.base import COMMAND_MODULES, app, register

register()
ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)  # type: ignore[attr-defined]


def test_each_command_is_registered_by_the_module_main_loads_for_it():
    """main() imports only the module COMMAND_MODULES names for the command being run."""
    assert sorted(COMMAND_MODULES) == COMMANDS
    for name in COMMANDS:
        word = name
        code = ("import sys, typer\nimport tether.cli.base as c\nc.register(sys.argv[1:])\n"
                "print(sorted(typer.main.get_command(c.app).commands))")
        out = subprocess.run([sys.executable, "-c", code, "-C", ".", "--debug", word, "--json"], capture_output=True,
                             text=True, check=True).stdout
        assert word in out, f"{word}: main() would not find it"


def _params(cmd: click.Command):
    return [p for p in cmd.params if p.name not in ("help",)]


def test_every_command_argument_and_option_has_help_text():
    missing = []
    for p in _params(ROOT):
        if not getattr(p, "help", None):
            missing.append(f"tether {p.opts}")
    for name in COMMANDS:
        cmd = ROOT.commands[name]  # type: ignore[attr-defined]
        if not (cmd.help or "").strip():
            missing.append(f"tether {name}: no description")
        for p in _params(cmd):
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"tether {name} {'/'.join(p.opts)}")
    assert not missing, "no help text: " + ", ".join(missing)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_flags_work_on_every_command(flag):
    runner = typer.testing.CliRunner()
    for name in [None, *COMMANDS]:
        args = [name, flag] if name else [flag]
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Usage:" in res.output, (args, res.output)


def test_version_and_completion():
    from importlib.metadata import version

    res = subprocess.run([f"{BIN}/tether", "--version"], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and res.stdout.strip() == f"tether {version('tether')}"
    # click's completion protocol, which the installed script (`tether --install-completion`) calls
    env = {"PATH": BIN, "HOME": "/tmp", "_TETHER_COMPLETE": "complete_bash", "COMP_WORDS": "tether li",
           "COMP_CWORD": "1"}
    res = subprocess.run([f"{BIN}/tether"], capture_output=True, text=True, check=False, env=env)
    assert res.returncode == 0 and res.stdout.split() == ["list"], res.stdout + res.stderr
    env.update(COMP_WORDS="tether promote --", COMP_CWORD="2")
    res = subprocess.run([f"{BIN}/tether"], capture_output=True, text=True, check=False, env=env)
    assert {"--env", "--approver", "--reason", "--dry-run"} <= set(res.stdout.split()), res.stdout


def test_one_spelling_per_meaning_and_the_old_ones_still_work(project):
    """--env names an environment in every command, --release the rollback target, --model the
    model; the old spellings (promote --to, rollback --to, a positional MODEL) still work, each
    with a deprecation note on stderr, and an old and a new spelling that disagree are refused."""
    v1 = "fraud-detector@v1.0.0"
    new = project.ok("promote", v1, "--env", "staging", "--approver", "a", "--reason", "r", "--dry-run", "--json")
    old = project.ok("promote", v1, "--to", "staging", "--approver", "a", "--reason", "r", "--dry-run", "--json")
    assert new.json()["env"] == old.json()["env"] == "staging"
    assert "deprecated" not in new.err and "promote --to is deprecated" in old.err and "--env" in old.err
    clash = project.tether("promote", v1, "--env", "staging", "--to", "production", "--approver", "a",
                           "--reason", "r", "--dry-run")
    assert clash.code == 2 and "disagree" in clash.err
    missing = project.tether("promote", v1, "--approver", "a", "--reason", "r")
    assert missing.code == 2 and "--env" in missing.err
    assert project.ok("list", "--model", "fraud-detector", "--json").json() == \
        project.ok("list", "fraud-detector", "--json").json()
    assert "positional MODEL is deprecated" in project.ok("status", "fraud-detector").err
    promote_to(project, v1, "staging")
    rb = ["rollback", "--env", "staging", "--approver", "a", "--reason", "r", "--dry-run"]
    old_rb, new_rb = project.tether(*rb, "--to", v1), project.tether(*rb, "--release", v1)
    assert old_rb.code == new_rb.code == 4 and "already runs" in old_rb.err and "already runs" in new_rb.err
    assert "rollback --to is deprecated" in old_rb.err and "deprecated" not in new_rb.err
    assert project.tether(*rb, "--to", v1, "--release", "fraud-detector@v9.9.9").code == 2


def test_tables_are_rich_on_a_terminal_and_aligned_plain_text_when_piped():
    from tether.cli.render import table

    rows = [("m@v1.10.0", "production", "reason\x1b[2Jwith\nnewline"), ("m@v1.9.0", "-", "x")]
    plain = table(("RELEASE", "STAGE", "NOTE"), rows, tty=False).splitlines()
    assert len(plain) == 3  # a header and one line per row, whatever the cells hold
    assert plain[0].index("STAGE") == plain[1].index("production") == plain[2].index("-")
    assert "\x1b" not in "".join(plain) and "\\x1b[2Jwith\\nnewline" in plain[1]
    rich = table(("RELEASE", "STAGE", "NOTE"), rows, tty=True, width=120)
    assert "\x1b[1m" in rich  # the header in bold: rich rendered it
    assert "\x1b[2J" not in rich and "\\x1b[2Jwith\\nnewline" in rich  # cells escaped before rich saw them
    assert "m@v1.10.0" in rich and "production" in rich
