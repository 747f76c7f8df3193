"""What a hot swap costs the release that serves (issue 34). Workers are forked from one zygote
that imported the libraries when the server started: each in a session of its own, its exit
status reported by the zygote, and serving goes on when the zygote dies. A worker started while
another serves verifies and loads at a lower CPU priority, its session's autogroup included, and
takes it back (every thread) before it says ready. A stopped worker exits without the
interpreter's teardown and still runs its model's exit handlers. Real workers on the text
classifier, read through /proc."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

import pytest
from servehelp import call, serve_proc, serving, until
from textserve import build_textserve, deploy, promote, release, served_project

from tether.runtime.workerproc import Worker
from tether.runtime.zygote import _reseed
from tether.runtime.zygoteproc import Zygote


def stat_of(pid: int, tid: int | None = None) -> list[str]:
    """/proc/PID/stat's fields after the command's parentheses (field 3 onwards)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    text = Path(path).read_text()
    return text[text.rindex(")") + 2:].split()


def nice_of(pid: int, tid: int | None = None) -> int:
    return int(stat_of(pid, tid)[16])


def parent_of(pid: int) -> int:
    return int(stat_of(pid)[1])


def session_of(pid: int) -> int:
    return int(stat_of(pid)[3])


def threads_of(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def autogroup_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except OSError:
        return None


def can_take_back() -> bool:
    """What the worker checks: lowering is only done where the priority can be restored."""
    soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
    return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or 20 - soft <= os.getpriority(os.PRIO_PROCESS, 0)


def wait_at_import(p, marker: Path) -> None:
    """The entrypoint starts a thread and then waits while `marker` exists, at import: a worker
    that is still loading, for as long as the test wants to look at it."""
    path = p.root / "src/serve.py"
    head = '"""How this project is served: tether imports Model from the release\'s own tree."""\n'
    text = path.read_text()
    assert head in text
    path.write_text(text.replace(head, head + "import os as _os\nimport threading as _th\nimport time as _time\n\n"
                                 "_th.Thread(target=_time.sleep, args=(3600,), daemon=True).start()\n"
                                 f"while _os.path.exists({str(marker)!r}):\n    _time.sleep(0.05)\n"))


def test_a_worker_started_while_another_serves_loads_lower_and_takes_the_priority_back_before_ready(tmp_path):
    p, _v1, target = served_project(tmp_path)
    marker = tmp_path / "loading"
    wait_at_import(p, marker)
    v2 = release(p, "serving code that waits at import while a marker exists")
    promote(p, v2)
    deploy(p, target)
    marker.touch()  # from now on (the project's evaluation and promote's smoke gate imported it too)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    lowered = can_take_back() and base < 19
    zygote = Zygote()
    worker = Worker(target, target / "releases" / v2, zygote=zygote, lower=True)
    try:
        pid = worker.proc.pid
        assert parent_of(pid) == zygote.proc.pid  # forked
        until(lambda: session_of(pid) == pid, "the forked worker in a session of its own", timeout=30)
        group = None
        if lowered:
            until(lambda: len(threads_of(pid)) >= 2 and all(nice_of(pid, t) == min(base + 10, 19)
                                                            for t in threads_of(pid)),
                  "the loading worker and the thread its model started, both niced", timeout=60)
            group = autogroup_of(pid)  # None without autogroup scheduling
            if group is not None:  # its own session's group, created at nice 0, was lowered too
                assert group == 10, Path(f"/proc/{pid}/autogroup").read_text()
        else:
            until(lambda: len(threads_of(pid)) >= 2, "the model's thread", timeout=60)
            assert nice_of(pid) == base  # nothing it could not take back
        assert not worker.ready.done()
        marker.unlink()
        hello = worker.ready.result(120)
        assert hello.release == v2 and hello.pid == pid
        assert {nice_of(pid, t) for t in threads_of(pid)} == {base}  # every thread, not the main one only
        if group is not None:
            assert autogroup_of(pid) == 0
        worker.stop(grace=20)
        assert worker.status() == 0  # the zygote reported the clean exit
    finally:
        worker.kill()
        zygote.stop()


def test_workers_fork_from_one_zygote_and_serving_survives_its_death(tmp_path):
    """The server forks every worker from its zygote; kill -9 of the zygote leaves the live
    worker answering, a kill -9 of a worker is still reported with its signal, and the next
    release is served all the same (from a new zygote, or a fresh interpreter meanwhile)."""
    p, v1, target = served_project(tmp_path)
    log = tmp_path / "serve.log"
    with serve_proc(p, target, log) as (url, proc):
        pid = serving(url, v1)["pid"]
        zygote = parent_of(pid)
        assert zygote != proc.pid and parent_of(zygote) == proc.pid
        assert "zygote" in Path(f"/proc/{zygote}/cmdline").read_text()
        assert session_of(pid) == pid and session_of(zygote) == zygote
        os.kill(zygote, signal.SIGKILL)
        until(lambda: not Path(f"/proc/{zygote}").exists() or stat_of(zygote)[0] == "Z", "the zygote gone")
        for _ in range(5):
            code, body, _ = call(url, "/predict", {"records": [{"text": "a fine film"}]})
            assert code == 200 and body["release"] == v1, body
        assert serving(url, v1)["pid"] == pid
        serve_py = p.root / "src/serve.py"
        serve_py.write_text(serve_py.read_text() + "\n# v2: the same model, another release\n")
        v2 = release(p, "another release after the zygote died")
        promote(p, v2)
        deploy(p, target)
        pid2 = serving(url, v2)["pid"]
        assert parent_of(pid2) != zygote
        os.kill(pid2, signal.SIGKILL)
        code, body, _ = until(lambda: (lambda r: r if r[0] == 503 else None)(call(url, "/ready")),
                              "/ready to say the worker is gone", timeout=10)
        assert "status -9" in body["error"], body
        assert serving(url, v2)["pid"] != pid2  # restarted
    assert "Traceback" not in log.read_text(), log.read_text()


def test_a_forked_worker_draws_other_random_numbers_than_its_zygote():
    """numpy's global generator is reseeded in the child (a fork copies its state)."""
    import numpy as np

    np.random.seed(7)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _reseed()
            os.write(w, float(np.random.random()).hex().encode())
        finally:
            os._exit(0)
    os.close(w)
    child = float.fromhex(os.read(r, 100).decode())
    os.close(r)
    os.waitpid(pid, 0)
    assert child != float(np.random.random())


@pytest.mark.parametrize("forked", [False, True], ids=["spawned", "forked"])
def test_a_stopped_worker_exits_at_once_and_its_exit_handlers_still_run(tmp_path, forked):
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
    zygote = Zygote() if forked else None
    worker = Worker(target, target / "releases" / v1, zygote=zygote)
    if zygote is not None:
        assert parent_of(worker.proc.pid) == zygote.proc.pid
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
    if zygote is not None:
        zygote.stop()


class FakeServed:
    def __init__(self, loader: str, schema: dict, fail: bool = False) -> None:
        self.loader, self.schema, self.fail, self.calls = loader, schema, fail, []

    def predict(self, records):
        self.calls.append(records)
        if self.fail:
            raise ValueError("this model wants something else")
        return [{"score": 0.5}]


SCHEMA = {"features": [
    {"name": "amount", "dtype": "float64", "min": 0.95, "max": 1744.05},
    {"name": "hour", "dtype": "int64", "min": 0.0, "max": 23.0},
    {"name": "kind", "dtype": "category", "categories": ["card", "wire"]},
    {"name": "online", "dtype": "bool"},
    {"name": "note", "dtype": "string"},
    {"name": "small", "dtype": "int8", "min": 100, "max": 1e9},  # a training range wider than the dtype
    {"name": "odd", "dtype": "float32", "min": float("nan"), "max": 1.0},
    {"name": "maybe", "dtype": "float64", "nullable": True},
]}


def test_a_built_in_loader_is_warmed_on_a_record_its_schema_accepts_an_entrypoint_never():
    """The first prediction is made before ready (issue 34: it held up the requests queued behind
    it after a swap), on a record the server's own validator accepts; an entrypoint's code is
    never called with a made-up record; a warm-up that fails is no failure."""
    from tether.runtime.schema import RecordValidator
    from tether.runtime.worker import _warm

    skops = FakeServed("skops", SCHEMA)
    _warm(skops)
    assert len(skops.calls) == 1 and len(skops.calls[0]) == 1
    record = skops.calls[0][0]
    clean, errors = RecordValidator(SCHEMA).validate([record])
    assert errors == [] and clean is not None, errors
    assert record["amount"] == (0.95 + 1744.05) / 2 and record["hour"] == 12 and record["kind"] == "card"
    assert record["small"] == 127 and record["odd"] == 0.0 and record["online"] is False
    entrypoint = FakeServed("entrypoint", SCHEMA)
    _warm(entrypoint)
    assert entrypoint.calls == []
    failing = FakeServed("onnx", SCHEMA, fail=True)
    _warm(failing)  # no exception: the worker goes on to say ready
    assert len(failing.calls) == 1
    no_schema = FakeServed("skops", None)
    _warm(no_schema)
    assert no_schema.calls == []
