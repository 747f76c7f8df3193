"""`tether zygote`: the one process of a server that imports the libraries every worker needs, and
forks each release's worker from there (the server's side: tether.runtime.zygoteproc).

A worker started from a fresh interpreter spends ~1.7 s of CPU importing numpy, pandas,
scikit-learn and skops before it reads a byte of its release (docs/serving.md, "Where a swap's
time goes"); during a swap that CPU is taken from the worker serving traffic. The zygote pays it
once, when the server starts, and then forks: a fork costs milliseconds, and the child goes on
with the release's verification and load as a worker started by `python -c` would (the same
`tether.runtime.worker.run`, the same sys.path, its own session, its own stdin/stdout pipes).

Nothing of any release is imported here: the child verifies its release before it imports the
release's code, exactly as before. The zygote runs no threads (a fork copies only the calling
thread) and answers on one SOCK_SEQPACKET socket, a message per packet:

  server -> zygote   {"id", "target", "release", "smoke_eval", "once", "lower"} + two fds (SCM_RIGHTS):
                     the read end of the worker's stdin, the write end of its stdout
  zygote -> server   {"event": "zygote", "pid"}            its imports are done
                     {"id", "pid"}                          a worker was forked
                     {"id", "error"}                        it could not fork one
                     {"exited": pid, "status"}              a worker ended (negative: the signal)

EOF on the socket (the server is gone or stops) ends the zygote; its workers see EOF on their own
stdin and stop as they always do.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

PREIMPORT = ("numpy", "pandas", "sklearn.ensemble", "sklearn.linear_model", "sklearn.pipeline", "sklearn.compose",
             "sklearn.preprocessing", "skops.io", "pydantic", "yaml", "tether.servedir.verify", "tether.servedir.stamp",
             "tether.runtime.loaders", "tether.runtime.schema", "tether.runtime.bundle", "tether.runtime.smoke",
             "tether.core.evalslice", "tether.core.guard", "tether.runtime.worker", "tether.runtime.attestguard")
MAX_PACKET = 1 << 16


def run(sock_fd: int) -> int:
    """Import, then fork a worker per request until the socket closes. Returns the exit status."""
    import gc
    import importlib
    import selectors
    import signal
    import socket

    sys.dont_write_bytecode = True  # as every worker: release trees stay as verified
    for name in PREIMPORT:
        try:
            importlib.import_module(name)
        except Exception:  # an optional library this host lacks: a release that needs it says so
            pass
    sock = socket.socket(fileno=sock_fd)
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd sees it
    signal.set_wakeup_fd(sig_w)
    _send(sock, {"event": "zygote", "pid": os.getpid()})
    gc.freeze()  # what is imported stays shared with every child: the collector never touches it
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        sel.register(sig_r, selectors.EVENT_READ)
        while True:
            ready = {key.fileobj for key, _ in sel.select()}
            if sig_r in ready:
                _reap(sock, sig_r)
            if sock in ready and not _fork_one(sock, (sig_r, sig_w)):
                return 0


def _send(sock, msg: dict) -> None:
    try:
        sock.send(json.dumps(msg).encode())
    except OSError:
        pass  # the server is gone: the next read says so


def _reap(sock, sig_r: int) -> None:
    import contextlib

    with contextlib.suppress(BlockingIOError):
        while os.read(sig_r, 4096):
            pass
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _fork_one(sock, private: tuple[int, int]) -> bool:
    """One request: fork its worker. False on EOF (the server is gone)."""
    import socket

    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 2)
    except OSError:
        return False
    if not data:
        for fd in fds:
            os.close(fd)
        return False
    try:
        req = json.loads(data)
        rid = req["id"]
    except (ValueError, KeyError, TypeError):
        for fd in fds:
            os.close(fd)
        return True  # not a request: the server only sends well-formed ones
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        _send(sock, {"id": rid, "error": f"expected 2 file descriptors, got {len(fds)}"})
        return True
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        _send(sock, {"id": rid, "error": f"fork failed: {exc}"})
        return True
    if pid == 0:
        _child(req, fds, [sock.fileno(), *private])  # never returns
    for fd in fds:
        os.close(fd)
    _send(sock, {"id": rid, "pid": pid})
    return True


def _child(req: dict, fds: list[int], private: list[int]) -> None:
    """The forked worker: its own session, the pipes as stdin and stdout, then what `tether
    worker` runs. Ends the process (os._exit): the zygote's exit handlers are not its own."""
    import signal

    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in private:
            os.close(fd)
        os.setsid()  # as a spawned worker: a terminal's Ctrl-C reaches the server only
        os.dup2(fds[0], 0)
        os.dup2(fds[1], 1)
        for fd in fds:
            os.close(fd)
        sys.stdin = open(0, encoding="utf-8", closefd=False)
        os.chdir(req["release"])  # where a spawned worker starts
        _reseed()
        from tether.runtime.worker import run as run_worker

        code = run_worker(Path(req["target"]), Path(req["release"]), req.get("smoke_eval"), bool(req.get("once")),
                          lower=bool(req.get("lower")))
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reseed() -> None:
    """A fork copies the zygote's random state: numpy's global generator gets fresh entropy, as
    it would in a new interpreter (the standard library's `random` reseeds itself at fork)."""
    np = sys.modules.get("numpy")
    if np is not None:
        try:
            np.random.seed()
        except Exception:
            pass
