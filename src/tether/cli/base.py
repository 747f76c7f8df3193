"""The command line: the only package that prints or exits. Each command parses its arguments,
calls one module that does the work, and renders the result as text or `--json`.

`releases.py` (release, conf apply, list, show, diff, check, status), `moves.py` (promote,
rollback, history, gc) and `hosts.py` (deploy, verify, checkout, serve) register their commands
on `app`; `render.py` turns results into text and tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import typer

try:  # typer 0.2x vendors click; its context is the one our commands run in
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - a typer that uses click itself
    from click import get_current_context  # type: ignore[no-redef]

from tether.cli.render import emitted, safe
from tether.errors import TetherError, UsageError

app = typer.Typer(
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Release, promote, deploy and roll back the whole model tuple "
    "(weights, data, code, params, threshold) as one unit, on Git + DVC.\n\n"
    "-q/--quiet (release, promote, rollback, deploy, checkout, verify, gc) keeps the result's one "
    "line on stdout and errors and warnings on stderr: no status lines, no progress bar. Exit codes "
    "are the same. Times print as ISO 8601 to the second in UTC (2026-12-05T15:40:12+00:00).",
)


@dataclass(frozen=True)
class Options:
    """The global options, kept on typer's context (no module state)."""

    debug: bool = False
    chdir: str = "."


def global_options() -> Options:
    ctx = get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, Options) else Options()

JSON = typer.Option(False, "--json", help="Machine-readable output.")
DRY = typer.Option(False, "--dry-run", help="Print the plan; change nothing.")
QUIET = typer.Option(False, "-q", "--quiet",
                     help="Only the result's line (stdout), errors and warnings (stderr): no status lines, no bar.")


def chatter(as_json: bool, quiet: bool):
    """Where a command's status lines go: nowhere with --json or -q, else stderr."""
    return None if as_json or quiet else progress
MODEL_OPT = typer.Option(None, "--model", help="The model (optional when dvc.yaml declares one).")
MODEL_ALL = typer.Option(None, "--model", help="One model (default: every model dvc.yaml declares).")
# The model was once a positional argument of release, list, check and status: still taken, with a
# deprecation note, so scripts keep working while they move to --model.
MODEL_POSITIONAL = typer.Argument(None, hidden=True, metavar="[MODEL]",
                                  help="Deprecated: use --model.")


APPROVER = typer.Option(None, "--approver", help="Who approves (recorded; default: git's user.email).")


def approver_of(ws, given: str | None) -> str:
    """--approver, or else git's `user.email` in this repository; refused (exit 2) without either."""
    if given is not None:
        return given  # an empty one is the move's own refusal ("approver is empty")
    email = ws.git.run("config", "user.email", check=False).stdout.strip()
    if not email:
        raise UsageError("who approves? pass --approver NAME (no git user.email is set to default to)",
                         hint="or set it once: git config user.email you@example.com")
    return email


def _version(value: bool) -> None:
    if value:
        # tether.__version__, not importlib.metadata (90 ms); tests/workflow/test_cli_conventions.py checks
        # it against the installed distribution's version
        from tether import __version__

        typer.echo(f"tether {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    chdir: str = typer.Option(".", "-C", help="Run as if started in this directory."),
    _show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print tether's version and exit."),
) -> None:
    import os

    if not os.path.isdir(chdir):
        raise UsageError(f"-C {chdir}: no such directory")
    ctx.obj = Options(debug=debug, chdir=chdir)


def open_workspace():
    from tether.adapters.workspace import Workspace

    return Workspace.discover(global_options().chdir)


def emit(data, as_json: bool, text: str | None = None, *, escaped: bool = False) -> None:
    """JSON, or the text (escaped here unless the caller escaped each cell: a rich table)."""
    out = emitted(data, as_json, text, escaped=escaped)
    if out is not None:
        typer.echo(out)


class _Bar:
    """The byte bar of one long operation, started when the work announces its total or moves
    its first byte (never a `0/?` bar ahead of the manifest), stopped and cleared at the end."""

    def __init__(self, label: str, console) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), console=console or Console(stderr=True),
                            transient=console is None)
        self.task = self.bar.add_task(safe(label), total=None)
        self.started, self.total = False, 0

    def _start(self) -> None:
        if not self.started:
            self.bar.start()
            self.started = True

    def advance(self, n: int) -> None:
        self._start()
        self.bar.advance(self.task, n)

    def expect(self, n: int) -> None:
        self.total += n
        self.bar.update(self.task, total=self.total)
        self._start()
        self.bar.refresh()

    def say(self, text: str) -> None:
        """A status line above the bar, on its own line (the bar is cleared, then drawn again below)."""
        if not self.started:
            typer.echo(text, err=True)
            return
        from rich.text import Text

        self.bar.console.print(Text(text), soft_wrap=True)

    def stop(self) -> None:
        if self.started:
            self.bar.stop()


_BAR: ContextVar[_Bar | None] = ContextVar("tether_bar", default=None)  # the bar on screen, if any


def progress(msg: str) -> None:
    """A status line on stderr (above the byte bar when one is on screen)."""
    bar = _BAR.get()
    if bar is not None:
        bar.say(safe(msg))
    else:
        typer.echo(safe(msg), err=True)


@contextmanager
def byte_bar(label: str, enabled: bool = True, console=None) -> Iterator[None]:
    """A progress bar of the bytes copied and hashed inside the block (tether.meter), on stderr,
    only when stderr is a terminal (or a console is given); piped, `--json` or `-q`, nothing. Its
    total is what the work inside announced (meter.expect: a manifest's sizes); status lines
    (`progress`) print above it, each on its own line, and the bar is cleared when the block
    ends, before the result is printed."""
    if not enabled or (console is None and not sys.stderr.isatty()):
        yield
        return
    from tether import meter

    bar = _Bar(label, console)
    token = _BAR.set(bar)
    try:
        with meter.counting(bar.advance, bar.expect):
            yield
    finally:
        _BAR.reset(token)
        bar.stop()


def deprecated(old: str, new: str) -> None:
    progress(f"warning: {old} is deprecated and will be removed; use {new}")


def one_of(new: str | None, old: str | None, new_name: str, old_name: str) -> str | None:
    """An option renamed for consistency: the new spelling, or the old one with a note."""
    if old is not None:
        if new is not None and new != old:
            raise UsageError(f"{new_name} and {old_name} disagree: give {new_name} only")
        deprecated(old_name, new_name)
        return old
    return new


# The command modules register on `app` (they import it from here). All of them, in this order
# (the order `tether --help` lists them in), for help, completion and an unknown command; only
# the one that registers the command being run otherwise: building the click tree of every
# command is a quarter of a read command's start-up. tests/workflow/test_cli_conventions.py checks that
# COMMAND_MODULES names exactly the commands each module registers.
MODULES = ("init", "releases", "moves", "hosts", "attest", "repro", "canary", "hook", "k8s")
COMMAND_MODULES = {
    "init": "init",
    "release": "releases", "conf": "releases", "list": "releases", "show": "releases", "diff": "releases",
    "check": "releases", "status": "releases",
    "promote": "moves", "rollback": "moves", "history": "moves", "gc": "moves",
    "deploy": "hosts", "verify": "hosts", "checkout": "hosts", "serve": "hosts", "worker": "hosts", "zygote": "hosts",
    "attest": "attest",
    "reproduce": "repro", "report": "repro", "export": "repro",
    "canary": "canary", "guard": "canary",
    "hook": "hook", "events": "hook",
    "kserve-init": "k8s", "k8s": "k8s",
}


def command_word(argv: list[str]) -> str | None:
    """The command argv runs (None: no command, or help of the whole tool). Skips the global
    options, and -C's value."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-C":
            i += 2
            continue
        if a.startswith("-"):
            if a in ("-h", "--help", "--install-completion", "--show-completion"):
                return None
            i += 1
            continue
        return a
    return None


def register(argv: list[str] | None = None) -> None:
    """Import the command modules `argv` needs (every one when argv is None)."""
    import importlib
    import os

    word = command_word(argv) if argv is not None and not os.environ.get("_TETHER_COMPLETE") else None
    if word is None and argv is not None and "--version" in argv and not os.environ.get("_TETHER_COMPLETE"):
        return  # the eager --version answers before any command is looked up
    for name in [COMMAND_MODULES[word]] if word in COMMAND_MODULES else MODULES:
        importlib.import_module(f"tether.cli.{name}")


def _debug_requested() -> bool:
    # The context is gone once the command has raised: read the flag from the command line.
    return "--debug" in sys.argv[1:]


def main() -> None:
    register(sys.argv[1:])
    try:
        app(standalone_mode=False)
    except TetherError as exc:
        if _debug_requested():
            raise
        typer.echo(safe(f"error: {exc.message}"), err=True)
        if exc.hint:
            typer.echo(safe(f"hint: {exc.hint}"), err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's usage errors and anything unexpected
        # typer may vendor click, so recognise click's exceptions by shape, not by class.
        code = getattr(exc, "exit_code", None)
        if hasattr(exc, "show") and isinstance(code, int):
            exc.show()
            sys.exit(code)
        if type(exc).__name__ == "Exit" and isinstance(code, int):
            sys.exit(code)
        if _debug_requested():
            raise
        typer.echo(safe(f"error: {type(exc).__name__}: {exc}"), err=True)
        typer.echo("hint: run again with --debug for the traceback", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
