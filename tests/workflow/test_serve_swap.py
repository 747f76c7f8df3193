"""What a hot swap costs the release that serves (issue 34): a spare worker waits at a lower CPU
priority, its session's autogroup included, and takes it back when it is assigned; a stopped
worker exits at the lowest priority without the interpreter's teardown, and still runs the exit
handlers its model registered. Real workers on the text classifier, read through /proc."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from servehelp import until
from textserve import build_textserve, promote, release, served_project

from tether.runtime.workerproc import Worker


def nice_of(pid: int) -> int:
    """The main thread's nice value (field 19 of /proc/PID/stat, after the command's parentheses)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])


def autogroup_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except OSError:
        return None


def can_take_back() -> bool:
    """What the worker checks: lowering is only done where the priority can be restored."""
    soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
    return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or 20 - soft <= os.getpriority(os.PRIO_PROCESS, 0)


def test_a_spare_waits_at_a_lower_priority_autogroup_included_and_takes_it_back_when_assigned(tmp_path):
    _p, v1, target = served_project(tmp_path)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    lowered = can_take_back() and base < 19
    spare = Worker(target, None)
    try:
        pid = spare.proc.pid
        group = None
        if lowered:
            until(lambda: nice_of(pid) == min(base + 10, 19), "the spare's thread niced", timeout=30)
            group = autogroup_of(pid)  # None without autogroup scheduling
            if group is not None:  # its own session's group, created at nice 0, was lowered too
                assert group == 10, Path(f"/proc/{pid}/autogroup").read_text()
        else:
            time.sleep(1)
            assert nice_of(pid) == base  # nothing it could not take back
        spare.assign(target / "releases" / v1)
        hello = spare.ready.result(120)
        assert hello.release == v1
        assert nice_of(pid) == base
        if group is not None:
            assert autogroup_of(pid) == 0
    finally:
        spare.kill()


def test_a_stopped_worker_exits_at_once_and_its_exit_handlers_still_run(tmp_path):
    p = build_textserve(tmp_path / "p")
    marker = tmp_path / "exit-handler-ran"
    path = p.root / "src/serve.py"
    path.write_text(path.read_text() + f"\nimport atexit as _atexit\n\n"
                    f"_atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n")
    v1 = release(p, "serving code with an exit handler")
    promote(p, v1)
    target = tmp_path / "serving"
    assert p.tether("deploy", "--env", "production", "--target", str(target)).code == 0
    marker.unlink(missing_ok=True)  # the project's own evaluation imported the code and exited too
    worker = Worker(target, target / "releases" / v1)
    worker.ready.result(120)
    assert worker.acquire()
    reply = worker.request([{"text": "a fine film"}])
    worker.release_slot()
    assert reply.ok, reply
    assert not marker.exists()
    t = time.monotonic()
    worker.stop(grace=20)
    took = time.monotonic() - t
    assert worker.status() == 0, worker.status()  # exited by itself, not killed after the grace
    assert marker.read_text() == "ran"
    assert took < 5, took
