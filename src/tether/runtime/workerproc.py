"""The server's side of a release worker (see tether.runtime.worker): start it, wait for
`ready`, send requests (pipelined, answered in order), drain and stop it. Every line either way
goes through tether.runtime.protocol."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING

from tether.adapters import cmd
from tether.errors import TetherError, by_exit_code
from tether.runtime.protocol import Failed, Ready, Reply, Request, decode, encode

if TYPE_CHECKING:
    import subprocess

    from tether.runtime.zygoteproc import Forked, Zygote

log = logging.getLogger("tether.serve")

# `python -c` with the script directory (the release) dropped from sys.path first: tether's own
# modules come from where tether is installed, never from the release's tree.
BOOT = "import sys; del sys.path[0]; from tether.cli import main; main()"


class WorkerGone(Exception):
    pass


class Worker:
    def __init__(self, target: Path, release: Path, *, smoke_eval: str | None = None, once: bool = False,
                 zygote: Zygote | None = None, lower: bool = False) -> None:
        """A worker for `release`: forked by `zygote` when there is one (its libraries already
        imported: the start costs the release's verification and load, not an interpreter's
        imports), else started from a fresh interpreter. `lower`: it verifies and loads at a
        lower CPU priority, taken back before it says ready (while another worker serves)."""
        self.release = Path(release)
        self.started_at = time.time()
        proc: Forked | subprocess.Popen | None = (self._forked(zygote, target, smoke_eval, once, lower)
                                                  if zygote is not None else None)
        if proc is None:
            args = [sys.executable, "-c", BOOT, "worker", "--target", str(target), "--release", str(release)]
            if smoke_eval:
                args += ["--smoke-eval", smoke_eval]
            if once:
                args += ["--once"]
            if lower:
                args += ["--lower"]
            proc = cmd.spawn_pipes(args, cwd=release, env={"PYTHONDONTWRITEBYTECODE": "1"})
        self.proc = proc
        assert self.proc.stdin is not None  # spawn_pipes opens both pipes
        self._stdin = self.proc.stdin
        self.ready: Future = Future()
        self.hello: Ready | None = None
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._write = threading.Lock()
        self._next = 0
        self.inflight = 0
        self.closing = False
        self._idle = threading.Condition(self._lock)
        threading.Thread(target=self._read, name=f"worker-{self.release.name}", daemon=True).start()

    def _forked(self, zygote: Zygote, target: Path, smoke_eval: str | None, once: bool,
                lower: bool) -> Forked | None:
        from tether.runtime.zygoteproc import ZygoteGone

        try:
            return zygote.fork({"target": str(target), "release": str(self.release), "smoke_eval": smoke_eval,
                                "once": once, "lower": lower}, ready_timeout=120.0)
        except ZygoteGone as exc:
            log.warning("starting %s from a fresh interpreter: %s", self.name, exc)
            return None

    @property
    def name(self) -> str:
        return self.release.name

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None  # started with stdout=PIPE
        if isinstance(out, io.RawIOBase):  # Popen(bufsize=0): a raw pipe reads a line byte by byte
            out = io.BufferedReader(out)
        try:
            for line in out:
                msg = decode(line)
                if isinstance(msg, Ready):
                    self.hello = msg
                    self.ready.set_result(msg)
                elif isinstance(msg, Failed):
                    cls = by_exit_code(msg.exit_code)
                    self.ready.set_exception(cls(msg.error or "the worker failed", hint=msg.hint))
                elif isinstance(msg, Reply):
                    with self._lock:
                        fut = self._pending.pop(msg.id, None)
                    if fut is not None:
                        fut.set_result(msg)
        except (OSError, ValueError):
            pass
        code = self.proc.wait()
        gone = WorkerGone(f"the worker for {self.name} exited (status {code})")
        if not self.ready.done():
            self.ready.set_exception(TetherError(f"the worker for {self.name} exited (status {code}) before it was ready"))
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            fut.set_exception(gone)

    def wait_ready(self, timeout: float) -> Ready:
        try:
            return self.ready.result(timeout)
        except FutureTimeout:
            self.kill()
            raise TetherError(f"the worker for {self.name} was not ready within {timeout:.0f} s") from None

    def acquire(self) -> bool:
        with self._lock:
            if self.closing:
                return False
            self.inflight += 1
            return True

    def release_slot(self) -> None:
        with self._lock:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.notify_all()

    def request(self, records: list, timeout: float = 60.0) -> Reply:
        """Call after acquire(); the worker's reply. WorkerGone if the process died."""
        fut: Future = Future()
        with self._lock:
            self._next += 1
            rid = self._next
            self._pending[rid] = fut
        data = encode(Request(rid, records)).encode()
        try:
            with self._write:
                self._stdin.write(data)
        except (OSError, ValueError):
            with self._lock:
                self._pending.pop(rid, None)
            raise WorkerGone(f"the worker for {self.name} is gone") from None
        try:
            return fut.result(timeout)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(rid, None)
            raise WorkerGone(f"the worker for {self.name} did not answer within {timeout:.0f} s") from None

    def drain_and_stop(self, timeout: float = 30.0) -> None:
        """No new requests; wait for the ones in flight; then EOF, and a kill if need be."""
        with self._lock:
            self.closing = True
            deadline = time.monotonic() + timeout
            while self.inflight > 0 and time.monotonic() < deadline:
                self._idle.wait(0.1)
        self.stop()

    def stop(self, grace: float = 5.0) -> None:
        """EOF, then wait up to `grace` seconds and kill. The worker has no request left to
        answer, so what it still does (its exit) runs at the lowest CPU priority: it never
        competes with the worker that took over."""
        with self._lock:
            self.closing = True
        with contextlib.suppress(OSError):  # lowering a child's priority needs no privilege
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, 19)
        try:
            self._stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(grace)
        except Exception:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except Exception:
                pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> int | None:
        """The process's exit status (negative: the signal that killed it); None while it runs."""
        return self.proc.poll()


def smoke_in_worker(release: Path, eval_rel: str, timeout: float = 600.0) -> str:
    """Promote's smoke gate: the release at `release` (materialised with its eval slice and a
    stamp) loaded and predicted by a worker, as `tether serve` would."""
    w = Worker(release.parent, release, smoke_eval=eval_rel, once=True)
    try:
        hello = w.wait_ready(timeout)
    finally:
        w.stop()
    return hello.smoke


def identity(release: Path) -> tuple:
    """What tells one materialisation of a release directory from another (deploy rebuilds a
    repaired release under the same name): its path, inode and stamp's change time."""
    try:
        st = os.stat(release)
        stamp = os.stat(release / ".tether" / "stamp.json")
        return (str(release), st.st_ino, stamp.st_ino, stamp.st_mtime_ns)
    except OSError:
        return (str(release), None, None, None)
