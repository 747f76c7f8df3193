"""The conventions users expect of a command-line tool: -h and --help everywhere, help text on
every command, argument and option, --version, and shell completion."""

from __future__ import annotations

import subprocess

import click
import pytest
import typer
import typer.testing

from project import BIN
from tether.cli import app

ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)  # type: ignore[attr-defined]


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
    assert {"--to", "--approver", "--reason", "--dry-run"} <= set(res.stdout.split()), res.stdout
