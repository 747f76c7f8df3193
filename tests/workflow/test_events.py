"""Events from git (issue 33, item 2): the post-receive hook, installed by `tether hook install
--events-secret`, sends every pushed release and environment move as a CloudEvent, signed with
HMAC-SHA256, to a receiver on 127.0.0.1; it retries while the receiver is down and never holds
up the push; `tether events --since` in a fresh clone yields the very same events from history.
On the churn shape (a model kept with `dvc add`, not the reference pipeline)."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from project import BIN, Project
from shapes import build_churn

from tether.core import cloudevents as ce

SECRET = b"s3cret-for-the-test"


class Receiver:
    """A webhook on 127.0.0.1: records each POST (arrival time, headers, body); answers 503
    while `down`."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict, bytes]] = []
        self.refused = 0
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.down:
                    outer.refused += 1
                    self.send_response(503)
                else:
                    outer.got.append((time.monotonic(), dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(body) for _t, _h, body in self.got]

    def wait_for(self, n: int, timeout: float) -> float:
        """Seconds until `n` events have arrived (fails after `timeout`)."""
        start = time.monotonic()
        while len(self.got) < n:
            assert time.monotonic() - start < timeout, f"{len(self.got)} of {n} events arrived in {timeout} s"
            time.sleep(0.02)
        return self.got[n - 1][0] - start


@pytest.fixture
def hooked(tmp_path):
    receiver = Receiver()
    p = build_churn(tmp_path / "c", "dvc")
    text = (p.root / "dvc.yaml").read_text()
    (p.root / "dvc.yaml").write_text(text.replace(
        "      tether:\n        smoke: false\n",
        f"      tether:\n        smoke: false\n        events:\n          urls: [{receiver.url}]\n"
        "          source: https://git.example.com/team/churn\n", 1))
    p.commit_all("send events to the team's receiver")
    p.git("push", "-q", "origin", "main")
    secret = tmp_path / "events.secret"
    secret.write_bytes(SECRET + b"\n")
    secret.chmod(0o600)
    res = p.ok("hook", "install", str(p.origin), "--events-secret", str(secret))
    assert f"installed {p.origin / 'hooks/post-receive'}" in res.out
    yield p, receiver
    receiver.server.shutdown()


def test_a_push_delivers_signed_events_within_2_s_and_a_fresh_clone_replays_them(hooked, tmp_path):
    p, receiver = hooked
    started = time.monotonic()
    p.ok("release", "--push", "-m", "first churn model")
    pushed = time.monotonic()
    receiver.wait_for(1, 10)
    assert receiver.got[0][0] - pushed < 2.0, "the release's event came more than 2 s after the push"
    p.ok("promote", "churn@v1.0.0", "--env", "staging", "--reason", "first", "--push")
    pushed = time.monotonic()
    receiver.wait_for(2, 10)
    assert receiver.got[1][0] - pushed < 2.0
    assert pushed - started < 60

    for _t, headers, body in receiver.got:
        assert headers["Content-Type"] == ce.CONTENT_TYPE
        assert ce.verify(body, SECRET, headers[ce.SIGNATURE_HEADER]), "the signature does not verify"
        assert not ce.verify(body, b"another secret", headers[ce.SIGNATURE_HEADER])
        assert not ce.verify(body + b" ", SECRET, headers[ce.SIGNATURE_HEADER])
    released, promoted = receiver.events()
    assert (released["type"], released["subject"], released["data"]["release"]) == \
        ("dev.tether.released", "churn@v1.0.0", "churn@v1.0.0")
    assert released["data"]["note"] == "first churn model"
    assert released["specversion"] == "1.0" and released["source"] == "https://git.example.com/team/churn"
    assert promoted["type"] == "dev.tether.promoted" and promoted["subject"] == "staging"
    data = promoted["data"]
    assert (data["release"], data["previous"], data["reason"]) == ("churn@v1.0.0", "none", "first")
    assert data["commit"] == p.sh("git", "rev-parse", "staging", cwd=p.origin).out.strip()
    assert data["approver"] and data["signature"]["status"] == "N"  # unsigned, and said so

    # a teammate's fresh clone replays the same events from history
    mate = tmp_path / "mate"
    p.sh("git", "clone", "-q", str(p.origin), str(mate))
    res = p.sh(os.path.join(BIN, "tether"), "events", "--json", cwd=mate)
    assert res.code == 0, res.err
    assert json.loads(res.out) == receiver.events()
    later = p.sh(os.path.join(BIN, "tether"), "events", "--json", "--since", promoted["time"], cwd=mate)
    assert [e["id"] for e in json.loads(later.out)] == [promoted["id"]]


def test_deliveries_retry_while_the_receiver_is_down_and_never_hold_up_the_push(hooked):
    p, receiver = hooked
    receiver.down = True
    started = time.monotonic()
    p.ok("release", "--push")
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 10
    while receiver.refused < 3:  # the first attempt and two retries (0.25 s, 0.5 s later)
        assert time.monotonic() < deadline, f"{receiver.refused} attempts in 10 s"
        time.sleep(0.05)
    assert not receiver.got
    outbox = sorted((p.origin / "tether/outbox").glob("*.json"))
    assert len(outbox) == 1, "the undelivered event waits in the outbox"
    receiver.down = False
    receiver.wait_for(1, 15)
    assert receiver.events()[0]["type"] == "dev.tether.released"
    deadline = time.monotonic() + 5
    while list((p.origin / "tether/outbox").glob("*.json")):
        assert time.monotonic() < deadline, "a delivered event stayed in the outbox"
        time.sleep(0.05)
    log = [json.loads(line) for line in (p.origin / "tether/deliveries.log").read_text().splitlines()]
    assert [e["status"] for e in log] == [503] * (len(log) - 1) + [204] and len(log) >= 4


def test_bad_settings_and_secrets_are_refused_and_install_writes_nothing(tmp_path):
    p: Project = build_churn(tmp_path / "c", "dvc")
    secret = tmp_path / "events.secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o644)
    res = p.tether("hook", "install", str(p.origin), "--events-secret", str(secret))
    assert res.code == 2 and "can be read by others" in res.err and "chmod 600" in res.err
    assert not (p.origin / "hooks/pre-receive").exists() and not (p.origin / "hooks/post-receive").exists()
    text = (p.root / "dvc.yaml").read_text()
    for bad, why in [("urls: [ftp://x.example/h]", "not an http(s) URL"),
                     ("urls: [https://user:pw@x.example/h]", "carries credentials"),
                     ("urls: https://x.example/h", "must be a list"),
                     ("url: [https://x.example/h]", "unknown key 'url'")]:
        (p.root / "dvc.yaml").write_text(text.replace(
            "      tether:\n        smoke: false\n", f"      tether:\n        smoke: false\n        events: {{{bad}}}\n", 1))
        res = p.tether("events")
        assert res.code == 2 and why in res.err, (bad, res.err)


def test_a_gto_assignment_pushed_by_hand_is_an_event_too(hooked):
    """A teammate runs the real `gto assign` (no tether move wrote that tag) and pushes it: the
    receiver hears `dev.tether.gto.assigned` for the environment, and the replay has it too."""
    import shutil
    import sys

    p, receiver = hooked
    p.ok("release", "--push")
    receiver.wait_for(1, 10)
    gto = shutil.which("gto", path=os.path.dirname(sys.executable))
    assert gto, "the real gto CLI (a test dependency) is missing"
    res = p.sh(gto, "assign", "churn", "--version", "v1.0.0", "--stage", "staging")
    assert res.code == 0, res.out + res.err
    p.git("push", "-q", "origin", "--tags")
    receiver.wait_for(2, 10)
    event = receiver.events()[1]
    assert (event["type"], event["subject"], event["data"]["release"]) == \
        ("dev.tether.gto.assigned", "staging", "churn@v1.0.0")
    assert event["data"]["source"] == "gto"
    replay = json.loads(p.ok("events", "--json").out)
    assert [e["id"] for e in replay] == [e["id"] for e in receiver.events()]
