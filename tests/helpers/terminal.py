"""Run the real CLI on a pseudo-terminal of a given width, as a person at a terminal sees it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def in_tty(p, *args: str, cols: int = 80, env: dict | None = None) -> tuple[int, str]:
    """(exit code, everything written to stdout and stderr) of `tether ARGS` run with both on a
    terminal `cols` wide. $COLUMNS is unset: the width is the terminal's own."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    run_env = {k: v for k, v in p.env(env).items() if k not in ("COLUMNS", "LINES")}
    run_env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "tether.cli", *args], cwd=p.root, env=run_env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def plain(text: str) -> list[str]:
    """The lines as they finally look: colours and cursor codes removed, each line what follows
    its last carriage return."""
    return [line.split("\r")[-1].rstrip() for line in ANSI.sub("", text).replace("\r\n", "\n").split("\n")]
