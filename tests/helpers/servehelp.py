"""A real `tether serve` process on 127.0.0.1 and a small HTTP client for the serving tests."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from s3server import free_port


def call(url: str, path: str, body=None, raw: bytes | None = None, timeout: float = 30):
    """(status, parsed JSON or text, headers)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return r.status, _parse(text), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, _parse(e.read()), dict(e.headers)


def _parse(text: bytes):
    try:
        return json.loads(text or b"{}")
    except ValueError:
        return text.decode(errors="replace")


def until(pred, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = pred()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def serving(url: str, release: str, timeout: float = 90) -> dict:
    return until(lambda: (lambda r: r[1] if r[0] == 200 and r[1].get("release") == release else None)(
        call(url, "/version")), f"{release} served", timeout)


@contextlib.contextmanager
def serve(p, target: Path, log: Path, *extra: str):
    """`tether serve --target TARGET` as a subprocess (cwd: the log's directory, not the
    repository), until it answers /ready; yields its URL."""
    with serve_proc(p, target, log, *extra) as (url, _proc):
        yield url


OPS = ("--approver", "ops", "--reason", "test")


@contextlib.contextmanager
def serve_proc(p, target: Path, log: Path, *extra: str, wait: bool = True, session: bool = False):
    """Like serve(), yielding (url, Popen) so a test can signal the server and read its exit
    status. `session`: its own process group, as a terminal's foreground job (for Ctrl-C)."""
    port = free_port()
    args = [sys.executable, "-m", "tether.cli", "serve", "--target", str(target), "--port", str(port),
            "--watch-interval", "0.2", *extra]
    with open(log, "w") as fh:
        proc = subprocess.Popen(args, cwd=log.parent, env=p.env(), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=session)
        url = f"http://127.0.0.1:{port}"
        try:
            if wait:
                until(lambda: proc.poll() is None and call(url, "/ready", timeout=2)[0] in (200, 503), "the server")
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def procs_in(directory: Path) -> list[int]:
    """Pids of the processes whose working directory is `directory` (a release's workers)."""
    import os

    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(directory):
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        out.append(int(entry.name))
            except OSError:
                continue
    return out
