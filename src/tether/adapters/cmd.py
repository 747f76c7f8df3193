"""The only place tether starts a subprocess: argument lists, never a shell string."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tether.errors import TetherError


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandFailed(TetherError):
    def __init__(self, result: Result) -> None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        super().__init__(f"`{' '.join(result.args[:3])}` failed: " + " | ".join(tail))
        self.result = result


def run(
    args: list[str],
    cwd: str | Path | None = None,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> Result:
    full_env = None
    if env:
        full_env = {**os.environ, **env}
    proc = subprocess.run(
        args,
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandFailed(result)
    return result


def run_bytes(args: list[str], cwd: str | Path | None, input: bytes) -> bytes:
    """For binary-safe batch protocols such as `git cat-file --batch`."""
    proc = subprocess.run(args, cwd=cwd, input=input, capture_output=True)
    if proc.returncode != 0:
        raise CommandFailed(Result(tuple(args), proc.returncode, "", proc.stderr.decode(errors="replace")))
    return proc.stdout


def spawn_pipes(args: list[str], cwd: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A long-running child speaking a line protocol on stdin/stdout (a serving worker); its
    stderr is the parent's, so what the child logs reaches the server's log. In a session of its
    own: a terminal's Ctrl-C reaches the parent only, which stops its children in order."""
    return subprocess.Popen(args, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                            env={**os.environ, **(env or {})}, bufsize=0, close_fds=True, start_new_session=True)


def spawn_passing(args: list[str], cwd: str | Path, fd: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A long-running child that talks over the one descriptor `fd` it inherits (the serving
    zygote's socket); no stdin, no stdout, the parent's stderr, a session of its own."""
    return subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None,
                            env={**os.environ, **(env or {})}, pass_fds=(fd,), start_new_session=True)
