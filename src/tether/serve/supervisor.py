"""`tether serve`'s supervisor: one worker process per release, following DIR/current.

A watcher notices when `current` names another release (or a rebuilt one) and starts a worker
for it in DIR/releases/<id>/ (tether.runtime.worker). Only when it says `ready` are new requests
routed to it; the old worker is drained (its requests in flight finish) and stopped. A worker
that fails leaves the old one serving, and /ready gives the reason at once. A release that failed
is retried when it is rebuilt (a repairing deploy) and every RETRY_SECONDS otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tether.clock import iso_of
from tether.runtime.protocol import Ready
from tether.runtime.schema import RecordValidator

if TYPE_CHECKING:
    from tether.runtime.workerproc import Worker
    from tether.runtime.zygoteproc import Zygotes

log = logging.getLogger("tether.serve")

RETRY_SECONDS = 5.0
READY_TIMEOUT = 300.0


@dataclass
class Live:
    """A ready worker and what the server needs to route to it."""

    worker: Worker
    key: tuple
    hello: Ready
    validator: RecordValidator | None
    started_at: str


class Preempted(Exception):
    """A starting worker is no longer wanted: `current` moved on, or the server is stopping."""


@dataclass
class Supervisor:
    target: Path
    live: Live | None = None
    starting: str | None = None
    last_error: str | None = None
    failed: dict = field(default_factory=dict)  # key -> (error, when)
    zygotes: Zygotes | None = None  # where workers are forked from (None: each from a fresh interpreter)
    poll: float = 0.2  # seconds between a starting worker's checks that `current` still names it
    stopping: threading.Event = field(default_factory=threading.Event)
    target_wait: float | None = None  # give up (self.fatal, exit 3) if the target has not appeared by then
    fatal: Exception | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def current_dir(self) -> Path | None:
        """The release directory `current` names; IntegrityError when `current` is not the
        symlink into releases/ that deploy makes (see servedir.layout.resolve_current)."""
        from tether.servedir.layout import resolve_current

        return resolve_current(self.target)

    def serving(self) -> Live | None:
        """The live worker if its process is still running: a worker killed under load is not
        ready, whatever it was a moment ago (the watcher restarts it)."""
        live = self.live
        return live if live is not None and live.worker.alive() else None

    def reason(self) -> str | None:
        """Why nothing (or not the wanted release) serves, for /ready and a 503."""
        live = self.live
        if live is not None and not live.worker.alive():
            return self.last_error or f"the worker for {live.worker.name} exited (status {live.worker.status()})"
        if live is None and self.last_error is None and self.starting is None and not self.target.is_dir():
            return self._missing()
        return self.last_error

    def _missing(self) -> str:
        wait = f"waits up to {self.target_wait:g} s" if self.target_wait is not None else "waits"
        return (f"{self.target} does not exist: nothing is deployed there (serve {wait} for "
                f"`tether deploy --target {self.target}`)")

    def _refuse(self, msg: str) -> None:
        if msg != self.last_error:
            live = self.serving()
            log.error("%s; still serving %s", msg, live.worker.name if live else "nothing")
        self.last_error = msg

    def refresh(self) -> bool:
        """Start a worker for what `current` names if it changed. True if it now serves. A start
        is preempted when `current` moves on while the worker is still starting (a release that
        hangs at import never holds up the rollback deployed after it)."""
        from tether.errors import TetherError
        from tether.runtime.workerproc import identity

        with self._lock:
            while True:
                try:
                    wanted = self.current_dir()
                except TetherError as exc:  # a `current` tether did not make: never switch to it
                    self._refuse(f"refusing {self.target / 'current'}: {exc.message}")
                    return False
                if wanted is None:
                    return False
                key = identity(wanted)
                if self.live and self.live.key == key:
                    if self.live.worker.alive():
                        self.last_error = None  # back on the release we serve: any refusal is over
                        return False
                    self._refuse(f"the worker for {wanted.name} exited (status {self.live.worker.status()}); "
                                 "restarting it")
                seen = self.failed.get(key)
                if seen and time.monotonic() - seen[1] < RETRY_SECONDS:
                    self.last_error = seen[0]
                    return False
                if self.stopping.is_set():
                    return False
                try:
                    new = self._launch(wanted, key)
                except Preempted:
                    if self.stopping.is_set():
                        return False
                    continue  # what `current` names now
                if new is None:
                    return False
                break
            old = self.live
            self.live = new
            self.failed.pop(key, None)
            self.starting = None
            self.last_error = None
            hello = new.hello
            log.warning("serving %s (commit %s, %s loader, pid %s, smoke: %s)", wanted.name, hello.commit[:12],
                        hello.loader, hello.pid, hello.smoke)
        if old is not None:
            threading.Thread(target=old.worker.drain_and_stop, daemon=True).start()
        return True

    def _launch(self, wanted: Path, key: tuple) -> Live | None:
        """A worker for `wanted`, once it is ready: forked from the zygote (its libraries imported
        when the server started), at a lower CPU priority while another worker serves. None when
        it failed (refused, and remembered for RETRY_SECONDS); Preempted, after it is killed,
        when `current` moved on or the server stops while it starts."""
        from tether.runtime.workerproc import Worker

        self.starting = wanted.name
        zygote = self.zygotes.get() if self.zygotes is not None else None
        worker = Worker(self.target, wanted, zygote=zygote, lower=self.serving() is not None)
        try:
            hello = self._wait_ready(worker, key)
            validator = RecordValidator(hello.schema) if hello.schema else None
        except Preempted as exc:
            worker.kill()
            self.starting = None
            log.warning("stopped starting %s: %s", wanted.name, exc)
            raise
        except Exception as exc:
            worker.kill()
            why = str(getattr(exc, "message", None) or exc)
            why = why[len(wanted.name) + 2:] if why.startswith(f"{wanted.name}: ") else why
            msg = f"refusing {wanted.name}: {why}"
            self.failed[key] = (msg, time.monotonic())
            self.starting = None
            self._refuse(msg)
            return None
        return Live(worker, key, hello, validator, iso_of(worker.started_at))

    def _wait_ready(self, worker: Worker, key: tuple) -> Ready:
        """The worker's ready line; Preempted as soon as `current` names another release (or
        another build of it) or the server stops, checked every `poll` seconds."""
        from concurrent.futures import TimeoutError as FutureTimeout

        from tether.errors import TetherError
        from tether.runtime.workerproc import identity

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                return worker.ready.result(max(0.0, min(self.poll, deadline - time.monotonic())))
            except FutureTimeout:
                pass
            if self.stopping.is_set():
                raise Preempted("the server is stopping")
            if time.monotonic() >= deadline:
                raise TetherError(f"the worker for {worker.name} was not ready within {READY_TIMEOUT:.0f} s")
            try:
                now = self.current_dir()
            except TetherError:
                continue  # a `current` tether did not make preempts nothing: it is refused later
            if now is not None and identity(now) != key:
                raise Preempted(f"{self.target / 'current'} now names {now.name}")

    def watch(self, interval: float, stop: threading.Event, on_fatal=None) -> None:
        """Follow `current` until `stop`. With `target_wait`, a target that has not appeared
        within it is fatal: `self.fatal` is set and `on_fatal()` called (the server exits 3)."""
        from tether.errors import NotFound

        self.stopping = stop
        if self.zygotes is not None:
            self.zygotes.get()  # its imports run now, while nothing else starts
        t0, seen = time.monotonic(), self.target_wait is None
        if not seen and not self.target.is_dir():
            log.warning("%s", self._missing())
        while not stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # never let the watcher die
                log.exception("watcher: %s", exc)
            if not seen:
                seen = self.target.is_dir()
                if not seen and self.target_wait is not None and time.monotonic() - t0 >= self.target_wait:
                    self.fatal = NotFound(
                        f"{self.target} never appeared: nothing was deployed there within {self.target_wait:g} s",
                        hint=f"check --target for a typo, deploy first (`tether deploy --env ENV --target "
                             f"{self.target}`), or wait longer with --target-wait SECONDS")
                    if on_fatal is not None:
                        on_fatal()
                    break
            stop.wait(interval)
        if self.live:
            self.live.worker.stop()


