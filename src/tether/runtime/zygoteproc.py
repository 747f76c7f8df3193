"""The server's handle on its zygote (tether.runtime.zygote): start it, ask it for a worker, and a
process handle for each forked worker that behaves as `subprocess.Popen` does where
tether.runtime.workerproc uses one (pid, stdin, stdout, poll, wait, kill).

A forked worker is the zygote's child, not the server's, so its exit status comes from the
zygote (`{"exited": pid, "status"}`). Signals go through a pidfd opened as soon as the pid is
known, so a kill can never reach another process that reused the number. If the zygote itself
dies, the workers it forked keep serving; their end is then seen through the pidfd (status
unknown: reported as -1), and the next worker starts a new zygote.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future

from tether.adapters import cmd

BOOT = "import sys; del sys.path[0]; from tether.cli import main; main()"
UNKNOWN = -1  # the exit status of a worker whose zygote died before it could report it
FORK_TIMEOUT = 10.0  # seconds for a fork once the zygote's imports are done


class ZygoteGone(Exception):
    """The zygote cannot fork (it died, or never started): start the worker from scratch."""


class Zygote:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = cmd.spawn_passing([sys.executable, "-c", BOOT, "zygote", "--fd", str(theirs.fileno())],
                                          cwd="/", fd=theirs.fileno(), env={"PYTHONDONTWRITEBYTECODE": "1"})
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.ready: Future = Future()  # the zygote's pid, once its imports are done
        self._lock = threading.Condition()
        self._send = threading.Lock()
        self._forks: dict[int, Future] = {}
        self._exits: dict[int, int] = {}
        self._next = 0
        self._closed = False
        threading.Thread(target=self._read, name="zygote", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if msg.get("event") == "zygote" and not self.ready.done():
                self.ready.set_result(msg.get("pid"))
            elif "exited" in msg:
                with self._lock:
                    self._exits[int(msg["exited"])] = int(msg["status"])
                    self._lock.notify_all()
            elif "id" in msg:
                with self._lock:
                    fut = self._forks.pop(msg["id"], None)
                if fut is not None:
                    if "pid" in msg:
                        fut.set_result(int(msg["pid"]))
                    else:
                        fut.set_exception(ZygoteGone(str(msg.get("error"))))
        with self._lock:
            self._closed = True
            pending, self._forks = self._forks, {}
            self._lock.notify_all()
        gone = ZygoteGone(f"the zygote exited (status {self.proc.wait()})")
        if not self.ready.done():
            self.ready.set_exception(gone)
        for fut in pending.values():
            fut.set_exception(gone)

    def alive(self) -> bool:
        with self._lock:
            return not self._closed and self.proc.poll() is None

    def fork(self, request: dict, ready_timeout: float) -> Forked:
        """A worker forked for `request` (the worker's arguments), with its pipes. ZygoteGone if
        the zygote is not there (or its imports did not finish within `ready_timeout`)."""
        from concurrent.futures import TimeoutError as FutureTimeout

        try:
            self.ready.result(ready_timeout)
        except FutureTimeout:
            raise ZygoteGone(f"the zygote's imports took over {ready_timeout:.0f} s") from None
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        fut: Future = Future()
        with self._lock:
            if self._closed:
                for fd in (stdin_r, stdin_w, stdout_r, stdout_w):
                    os.close(fd)
                raise ZygoteGone("the zygote exited")
            self._next += 1
            rid = self._next
            self._forks[rid] = fut
        try:
            with self._send:
                socket.send_fds(self.sock, [json.dumps({"id": rid, **request}).encode()], [stdin_r, stdout_w])
        except OSError as exc:
            with self._lock:
                self._forks.pop(rid, None)
            os.close(stdin_w)
            os.close(stdout_r)
            raise ZygoteGone(f"the zygote cannot be reached: {exc}") from None
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        try:
            pid = fut.result(FORK_TIMEOUT)
        except Exception:
            os.close(stdin_w)
            os.close(stdout_r)
            raise
        return Forked(self, pid, os.fdopen(stdin_w, "wb", buffering=0), os.fdopen(stdout_r, "rb"))

    def status_of(self, pid: int) -> int | None:
        with self._lock:
            return self._exits.get(pid)

    def wait_for(self, pid: int, timeout: float | None) -> int | None:
        """The reported status of `pid` within `timeout`; None if not reported (yet)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while pid not in self._exits and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._lock.wait(left)
            return self._exits.get(pid)

    def stop(self, grace: float = 5.0) -> None:
        """EOF to the zygote: it exits; the workers it forked are stopped by the server as ever."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(grace)
        except Exception:
            self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.wait(5)
        self.sock.close()


class Forked:
    """A worker the zygote forked, with the part of `subprocess.Popen` the server uses."""

    def __init__(self, zygote: Zygote, pid: int, stdin, stdout) -> None:
        self.zygote, self.pid, self.stdin, self.stdout = zygote, pid, stdin, stdout
        self.returncode: int | None = None
        self._lock = threading.Lock()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux 5.3+, or already reaped: the status says
            self._pidfd = None

    def _ended(self, timeout: float | None) -> bool:
        """Whether the process has ended, seen through its pidfd, waiting up to `timeout`."""
        pidfd = self._pidfd
        if pidfd is None:
            return self.zygote.status_of(self.pid) is not None or not _exists(self.pid)
        try:
            return bool(select.select([pidfd], [], [], timeout)[0])
        except (OSError, ValueError):  # closed by another thread: it saw the end
            return True

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                status = self.zygote.status_of(self.pid)
                if status is None and not self.zygote.alive() and self._ended(0):
                    status = UNKNOWN
                if status is not None:
                    self._done(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
            if self.zygote.alive():
                self.zygote.wait_for(self.pid, min(left, 0.5) if left is not None else 0.5)
            else:
                self._ended(min(left, 0.5) if left is not None else 0.5)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        with self._lock, contextlib.suppress(ProcessLookupError, OSError):
            if self.returncode is not None:
                return
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)

    def _done(self, status: int) -> None:
        self.returncode = status
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Zygotes:
    """The one zygote a server's supervisors share: started on first use (when the server
    starts), and again if it died, at most once per `retry` seconds (in between, and wherever
    it cannot start, workers start from a fresh interpreter)."""

    def __init__(self, retry: float = 5.0) -> None:
        self.retry = retry
        self.current: Zygote | None = None
        self._started = float("-inf")
        self._lock = threading.Lock()
        self._stopped = False

    def get(self) -> Zygote | None:
        with self._lock:
            if self._stopped:
                return None
            if self.current is not None and self.current.alive():
                return self.current
            if time.monotonic() - self._started < self.retry:
                return None
            if self.current is not None:
                self.current.stop(0)
            self._started = time.monotonic()
            try:
                self.current = Zygote()
            except OSError:
                self.current = None
            return self.current

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            zygote, self.current = self.current, None
        if zygote is not None:
            zygote.stop()
