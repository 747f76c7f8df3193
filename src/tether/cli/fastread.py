"""The read fast path: `list`, `status`, `history` and `show` answered from a kept view
(tether.adapters.refindex) without loading the CLI library.

Importing typer and building a command tree is most of a read's start-up (a bare typer app
takes 4 to 6 times `python -c pass`), while a read on an unchanged registry is one
`git for-each-ref`, one file and a table. So `tether.cli.main` first asks `answer(argv)`:
for a plain command line (the command, `--json`, `--model`, `--env`, `--at`, `show`'s REF, a
leading `-C DIR`) whose answer is kept for the ref state as it is now, it returns the very text
the typer command prints (both render it with the same tether.cli.render function). Anything
else returns None and the whole CLI runs: another option or spelling, help, completion,
`--debug`, no kept answer, a history the signing policy refuses, or any error (the CLI then
reports it with its own message and exit code). The fast path never computes, never refuses
and never writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The options each read command takes on this path: name -> takes a value. Deprecated
# spellings (a positional MODEL) are left to the CLI, which prints their note.
OPTIONS = {
    "list": {"--json": False, "--model": True},
    "status": {"--json": False, "--model": True},
    "history": {"--json": False, "--model": True, "--env": True, "--at": True},
    "show": {"--json": False, "--model": True},
}
POSITIONALS = {"list": 0, "status": 0, "history": 0, "show": 1}


@dataclass(frozen=True)
class Request:
    command: str
    chdir: str = "."
    options: tuple[tuple[str, str | bool], ...] = ()
    args: tuple[str, ...] = ()

    def opt(self, name: str):
        return dict(self.options).get(name)


def parse(argv: list[str]) -> Request | None:
    """The read this command line asks for, or None when it is anything the fast path leaves
    to the CLI. Strict: an option given twice, a value that looks like an option, `--`, or an
    unknown word all return None."""
    chdir, i = ".", 0
    if argv[:1] == ["-C"]:  # the one global option taken here, once
        if len(argv) < 2 or argv[1].startswith("-"):
            return None
        chdir, i = argv[1], 2
    if i >= len(argv) or argv[i] not in OPTIONS:
        return None
    command, rest = argv[i], argv[i + 1:]
    allowed = OPTIONS[command]
    options: dict[str, str | bool] = {}
    args: list[str] = []
    j = 0
    while j < len(rest):
        word = rest[j]
        name, eq, value = word.partition("=")
        if word.startswith("-"):
            if name not in allowed or name in options or (eq and not allowed[name]):
                return None
            if allowed[name] and not eq:
                if j + 1 >= len(rest) or rest[j + 1].startswith("-"):
                    return None
                value = rest[j + 1]
                j += 1
            options[name] = value if allowed[name] else True
        else:
            args.append(word)
        j += 1
    if len(args) != POSITIONALS[command]:
        return None
    return Request(command, chdir, tuple(sorted(options.items())), tuple(args))


def answer(argv: list[str]) -> str | None:
    """What the CLI would print for argv, when a kept view answers it; else None."""
    if os.environ.get("_TETHER_COMPLETE"):  # shell completion is typer's
        return None
    req = parse(argv)
    if req is None or not os.path.isdir(req.chdir):
        return None
    from tether.errors import TetherError

    try:
        return _answer(req)
    except (TetherError, OSError, ValueError, KeyError, TypeError):
        return None  # the CLI reads afresh and reports any error itself


def _answer(req: Request) -> str | None:
    from tether.registry import views
    from tether.cli import render
    from tether.adapters.workspace import Workspace

    ws = Workspace.discover(req.chdir)
    as_json = bool(req.opt("--json"))
    model = req.opt("--model")
    if req.command == "list":
        rows = views.kept_release_rows(ws, model)
        return None if rows is None else render.list_output(rows, as_json, bool(rows) or bool(ws.models))
    if req.command == "status":
        models = views.kept_model_status(ws, model)
        return None if models is None else render.status_output(models, as_json)
    if req.command == "show":
        shown = views.kept_shown_release(ws, req.args[0], model)
        return None if shown is None else render.show_output(shown, as_json)
    data = views.kept_env_history(ws, model, req.opt("--env"), req.opt("--at"))
    if data is None or data.get("refused"):  # a refusal is the CLI's: it prints, then exits 6
        return None
    return render.history_output(data, as_json)
