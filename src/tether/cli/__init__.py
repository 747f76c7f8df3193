"""The command line: the only package that prints or exits. Each command parses its arguments,
calls one module that does the work, and renders the result as text or `--json`.

`base.py` holds the typer app, the global options and the error handling; `releases.py`
(release, conf apply, list, show, diff, check, status), `moves.py` (promote, rollback, history,
gc), `hosts.py` (deploy, verify, checkout, serve, worker), `repro.py`, `canary.py` and `hook.py`
register their commands on it; `render.py` turns results into text and tables. `fastread.py`
answers a read from a kept view before typer is imported (see its docstring).

This module imports nothing heavy: `main` is the console script's entry point."""

from __future__ import annotations

import sys


def main() -> None:
    from tether.cli.fastread import answer

    out = answer(sys.argv[1:])
    if out is None:
        from tether.cli.base import main as run

        run()
        return
    try:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `tether list | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
