"""Delivering events to webhooks without ever holding up a push.

The post-receive hook writes each (URL, event) pair into an outbox under the bare repository's
git directory (`tether/outbox/`, one file each, written atomically) and starts one detached
deliverer (`tether hook deliver`), then returns: git's push is done before the first byte is
sent. The deliverer holds `tether/outbox/.lock` (so one runs at a time), POSTs each file in the
order it was written, deletes it on a 2xx answer, and retries the rest with exponential back-off
(0.25 s doubling to 30 s) until `give_up_after` seconds pass; what is left stays in the outbox
for the next push's deliverer (or `tether hook deliver`). A URL that fails holds back its later
events, so each receiver sees its events in order. Every attempt is a line of
`tether/deliveries.log`.

Each POST is CloudEvents' structured JSON mode (`Content-Type: application/cloudevents+json`)
with `X-Tether-Signature: sha256=<HMAC-SHA256 of the body>` under the server's secret; without a
secret nothing is sent (an unsigned event is worth nothing to a receiver that checks).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tether.clock import now_iso
from tether.core import cloudevents as ce

Post = Callable[[str, bytes, dict], int]  # (url, body, headers) -> HTTP status (0: no answer)


def outbox(git_dir: Path) -> Path:
    return git_dir / "tether" / "outbox"


def spool(git_dir: Path, items: list[tuple[str, dict]]) -> list[Path]:
    """Writes each (url, event) as its own file, named so that names sort in writing order."""
    box = outbox(git_dir)
    box.mkdir(parents=True, exist_ok=True)
    out = []
    stamp = time.time_ns()
    for i, (url, event) in enumerate(items):
        digest = hashlib.sha256(f"{url}\0{event['id']}".encode()).hexdigest()[:16]
        path = box / f"{stamp:020d}-{i:05d}-{digest}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": url, "event": event}, sort_keys=True))
        os.replace(tmp, path)
        out.append(path)
    return out


def pending(git_dir: Path) -> list[Path]:
    box = outbox(git_dir)
    return sorted(box.glob("*.json")) if box.is_dir() else []


def post(url: str, body: bytes, headers: dict) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (http(s) only: cloudevents.check_url)
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, ValueError):
        return 0


@dataclass
class Drained:
    sent: int = 0
    failed_attempts: int = 0
    left: list[Path] = field(default_factory=list)
    busy: bool = False  # another deliverer holds the lock: it will send these


def drain(git_dir: Path, secret: bytes, give_up_after: float = 600.0, send: Post = post,
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> Drained:
    """Sends what the outbox holds until it is empty or `give_up_after` seconds pass."""
    box = outbox(git_dir)
    box.mkdir(parents=True, exist_ok=True)
    result = Drained()
    start = clock()
    while True:
        with open(box / ".lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                result.busy = True  # the holder sends these: it looks again after it lets go
                break
            timed_out = _drain_locked(git_dir, secret, send, sleep, clock, start, give_up_after, result)
        # a hook that spooled while the lock was held started a deliverer that found it taken and
        # left: look once more now that it is free
        if timed_out or not pending(git_dir):
            break
    result.left = pending(git_dir)
    return result


def _drain_locked(git_dir: Path, secret: bytes, send: Post, sleep: Callable[[float], None],
                  clock: Callable[[], float], start: float, give_up_after: float, result: Drained) -> bool:
    """Passes over the outbox with back-off; True when it gave up with entries left."""
    delay = 0.25
    while True:
        failed = _one_pass(git_dir, secret, send, result)
        if not pending(git_dir):
            return False
        if clock() - start + delay > give_up_after:
            return True
        sleep(delay)
        delay = min(delay * 2, 30.0) if failed else 0.25


def _one_pass(git_dir: Path, secret: bytes, send: Post, result: Drained) -> bool:
    held_back: set[str] = set()
    failed = False
    for path in pending(git_dir):
        try:
            item = json.loads(path.read_text())
            url, event = ce.check_url(item["url"], "outbox"), item["event"]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # not ours, or damaged: set aside
            path.rename(path.with_suffix(".bad"))
            _log(git_dir, {"file": path.name, "error": f"unreadable outbox entry: {exc}"[:200]})
            continue
        if url in held_back:
            continue
        payload = ce.body(event)
        status = send(url, payload, {"Content-Type": ce.CONTENT_TYPE, ce.SIGNATURE_HEADER: ce.sign(payload, secret),
                                     "User-Agent": "tether-events"})
        _log(git_dir, {"url": url, "id": event.get("id"), "type": event.get("type"), "status": status})
        if 200 <= status < 300:
            path.unlink(missing_ok=True)
            result.sent += 1
        else:
            held_back.add(url)
            result.failed_attempts += 1
            failed = True
    return failed


def _log(git_dir: Path, entry: dict) -> None:
    with open(git_dir / "tether" / "deliveries.log", "a") as f:
        f.write(json.dumps({"time": now_iso(), **entry}, sort_keys=True) + "\n")


def start_deliverer(argv: list[str], git_dir: Path) -> None:
    """Starts `argv` (the deliverer) detached from the hook: its own session, no stdin, output
    appended to tether/deliveries.out, so git returns to the pusher at once."""
    out = open(git_dir / "tether" / "deliveries.out", "ab")
    try:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=git_dir,
                         start_new_session=True, close_fds=True)
    finally:
        out.close()
