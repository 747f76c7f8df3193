"""One release's worker process (`tether worker`, started by `tether serve`).

Started in DIR/releases/<id>/, it verifies the release against the manifest deploy derived from
git (servedir.verify.verify_release_dir), then imports the model through its entrypoint or a built-in
loader, with its own sys.path, then says `ready` (or `failed` and why) and answers requests.

Protocol: one JSON object per line. stdin carries `{"id", "records"}`; stdout carries the
`{"event": "ready" | "failed", …}` line first, then `{"id", "ok": true, "predictions"}` or
`{"id", "ok": false, "status", "error"}` per request, in order (as types: tether.runtime.protocol).
Anything the model's own code prints goes to stderr, never into the protocol. EOF on stdin stops
the worker.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from tether.runtime.protocol import Failed, Message, Ready, Reply, Request, decode, encode

INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)


def _reply(out, msg: Message) -> None:
    out.write(encode(msg))
    out.flush()


def run(target: Path, release: Path, smoke_eval: str | None = None, once: bool = False, lower: bool = False) -> int:
    """Serve `release` on this process's stdin/stdout. Returns the exit status. `smoke_eval`
    makes the smoke test mandatory on that eval slice; `once` stops after the ready line
    (promote's smoke gate); `lower`: verify and load at a lower CPU priority (another worker
    serves meanwhile), taken back before the ready line."""
    sys.dont_write_bytecode = True  # the release tree is read-only and must stay as verified
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the model's print() lands on stderr
    sys.stdout = sys.stderr
    from tether.errors import TetherError

    saved = _lower_priority() if lower else None
    try:
        served, hello = _start(Path(target), Path(release), smoke_eval)
    except TetherError as exc:
        _reply(proto, Failed(exc.message, exc.exit_code, exc.hint))
        return _done(exc.exit_code, proto) if once else exc.exit_code
    except Exception as exc:  # the model's own code failed to load
        _reply(proto, Failed(f"{type(exc).__name__}: {exc}", 1, hinted=False))
        traceback.print_exc()
        return _done(1, proto) if once else 1
    finally:
        if saved is not None:
            _restore_priority(saved)
    _reply(proto, hello)
    if once:
        return _done(0, proto)
    _loop(served, sys.stdin.buffer, proto)
    return _ended(proto)


def _ended(proto) -> int:
    """EOF: the server drained this worker and stops it. Exit without the interpreter's
    teardown: freeing numpy, pandas, scikit-learn and the model module by module costs about
    0.3 s of CPU (measured, docs/serving.md), at full priority, while the next release's worker
    serves on the same cores. The exit handlers the model's code or its libraries registered
    still run; every reply was flushed when it was written."""
    import atexit

    try:
        atexit._run_exitfuncs()
    except Exception:  # a handler's failure must not turn a clean stop into a crash report
        traceback.print_exc()
    return _done(0, proto)


def _done(code: int, proto) -> int:
    """A `once` worker (promote's smoke gate) has written its verdict: exit now. The interpreter's
    own teardown (freeing numpy, pandas, sklearn and the model, about a second) would only delay
    the gate, which waits for this process; nothing of the worker's needs it (no atexit work,
    no files open for writing but the two pipes, flushed here)."""
    for stream in (proto, sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


AUTOGROUP = Path("/proc/self/autogroup")


def _lower_priority() -> tuple[int, int | None] | None:
    """A starting worker's lower CPU priority: 10 nice levels down for this (the main) thread and, on
    Linux with autogroup scheduling, for this process's autogroup. The worker runs in a session
    of its own (a terminal's Ctrl-C is the server's), and the kernel schedules each session as
    one group with the same weight whatever its threads' nice values: a niced process still took
    a whole group's share from the live worker (measured, docs/serving.md). Only where the
    priority can be taken back before the worker says ready (root, or RLIMIT_NICE allows it): the old values;
    else nothing changes and None."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    can_restore = os.geteuid() == 0
    if not can_restore:
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
            can_restore = soft == resource.RLIM_INFINITY or 20 - soft <= base
        except (ImportError, OSError, ValueError):
            can_restore = False
    if not can_restore:
        return None
    os.setpriority(os.PRIO_PROCESS, 0, min(base + 10, 19))  # Linux: this thread; new threads inherit it
    group = _autogroup_nice()
    if group is not None and not _set_autogroup_nice(min(group + 10, 19)):
        group = None
    return base, group


def _restore_priority(saved: tuple[int, int | None]) -> None:
    """Every thread back to the old nice value (a thread the model's load started inherited the
    lowered one, and Linux keeps a nice value per thread), then the session's group."""
    base, group = saved
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [os.getpid()]  # the main thread's id is the pid
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, base)
        except OSError:
            pass
    if group is not None:
        _set_autogroup_nice(group)


def _autogroup_nice() -> int | None:
    """This process's autogroup nice value (`/autogroup-N nice K`); None without autogroup."""
    try:
        return int(AUTOGROUP.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _set_autogroup_nice(nice: int) -> bool:
    try:
        AUTOGROUP.write_text(str(nice))
        return True
    except OSError:
        return False


def _start(target: Path, release: Path, smoke_eval: str | None = None) -> tuple:
    """(the loaded model, its `Ready` line)."""
    from tether.servedir.stamp import manifest_digest
    from tether.servedir.verify import verify_release_dir
    from tether.runtime.loaders import load, release_settings

    t0 = time.monotonic()
    manifest, entries, bundle = verify_release_dir(target, release)
    from tether.runtime.attestguard import require as require_attestation

    require_attestation(release, manifest, entries)  # when the host asks (serve --require-attestation)
    settings = release_settings(release, manifest["model"])
    os.chdir(release)
    served = load(release, manifest, bundle, settings)
    from tether.runtime.loaders import ServeConfig
    from tether.runtime.schema import parse_features

    if served.schema is not None:
        parse_features(served.schema)  # a schema the server cannot validate is refused here
    config = ServeConfig.from_meta(settings.get("serve"))
    eval_scores: list = []
    smoke = _smoke(served, release, manifest, settings, smoke_eval, eval_scores)
    if smoke.startswith("skipped"):  # the smoke test made the first predictions already
        _warm(served)
    from tether.core.guard import bucket_counts
    return served, Ready(
        release=release.name, model=manifest["model"], version=manifest["version"], commit=manifest["commit"],
        manifest_sha256=manifest_digest(manifest),
        threshold=(manifest["components"].get("threshold") or {}).get("value"), loader=served.loader,
        schema=served.schema, max_records=config.max_records, smoke=smoke, pid=os.getpid(),
        load_seconds=round(time.monotonic() - t0, 3),
        eval_scores=bucket_counts(eval_scores) if eval_scores else None,
    )


WARMED = ("skops", "onnx")  # the built-in loaders: predict is a pure function of the records


def _warm(served) -> None:
    """A model's first prediction costs two to three times a later one (lazy imports and caches
    in pandas and scikit-learn: 23 ms against 9 ms for the reference model, docs/serving.md), and
    right after a swap it held up the requests queued behind it. So it is made here, before the
    worker says ready, on one record the schema accepts, and the answer is thrown away. Only for
    the built-in loaders: an entrypoint's own code, which may count or log what it sees, is never
    called with a made-up record. A warm-up that fails changes nothing but the first request's
    time (the reason goes to the log)."""
    if served.loader not in WARMED or not served.schema:
        return
    from tether.runtime.schema import example_record

    try:
        served.predict([example_record(served.schema)])
    except Exception as exc:
        sys.stderr.write(f"tether worker: no warm-up ({type(exc).__name__}: {str(exc)[:200]}); "
                         "the first request pays for the model's first prediction\n")


def _smoke(served, release: Path, manifest: dict, settings: dict, required: str | None = None,
           sink: list | None = None) -> str:
    """Before it takes traffic: when the release carries its frozen eval slice (deploy --smoke
    or --full), the predictions and metrics it recorded must reproduce (smoke.check)."""
    from tether.errors import GateFailed
    from tether.core.evalslice import eval_path_or_none
    from tether.runtime.smoke import check

    rel = required or eval_path_or_none(manifest, settings)
    if rel is None or (required is None and not (release / rel).is_file()):
        return "skipped: no eval slice in the release directory (deploy --smoke materialises it)"
    if required is None and settings.get("smoke") is False:
        return "skipped: meta.tether.smoke is false"
    if required is not None:
        return check(served, release, manifest, rel)  # GateFailed: exit 5, promote's verdict
    try:
        return check(served, release, manifest, rel, sink)
    except GateFailed as exc:
        from tether.errors import IntegrityError

        raise IntegrityError(f"smoke test failed: {exc.message}", hint=exc.hint) from None


def _loop(served, stdin, out) -> None:
    from tether.runtime.loaders import finite_json

    for line in stdin:
        msg = decode(line)
        if not isinstance(msg, Request):
            continue  # not ours: the server only sends well-formed requests
        rid = msg.id
        try:
            preds = served.predict(msg.records)
        except INPUT_ERRORS as exc:
            _reply(out, Reply(rid, False, status=422,
                              error=f"the model rejected the input: {type(exc).__name__}: {str(exc)[:300]}"))
            continue
        except Exception as exc:
            traceback.print_exc()
            _reply(out, Reply(rid, False, status=500, error=f"the model failed: {type(exc).__name__}"))
            continue
        if not finite_json(preds):
            _reply(out, Reply(rid, False, status=500, error="the model returned NaN or infinity"))
            continue
        try:
            _reply(out, Reply(rid, True, predictions=preds))
        except (TypeError, ValueError) as exc:
            _reply(out, Reply(rid, False, status=500, error=f"the model's output is not JSON: {exc}"))
