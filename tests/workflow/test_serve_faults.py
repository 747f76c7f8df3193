"""`tether serve` under faults (issue 27, items 5-9): a worker killed with kill -9 under load, a
release whose import hangs while a rollback or a fix-forward is deployed behind it, a serving
directory that never appears, a busy port, Ctrl-C, a client that drops mid-body, and a guard
reading a server whose /metrics lies. Real servers, real workers, real signals, real HTTP."""

from __future__ import annotations

import os
import signal
import threading
import time

from project import BIN
from servehelp import OPS, call, procs_in, serve_proc, serving, until
from textserve import build_textserve, deploy, hang_when, promote, release, served_project, set_featurizer

TEXTS = [{"text": "Great wonderful movie, really loved the cast"}, {"text": "awful boring plot and a dull ending"}]
DEPLOY_TO_ANSWER_S = 5.0  # issue 27 item 6: a rollback behind a hanging release serves within this


class Load:
    """POST /predict in a loop from a thread; the statuses seen."""

    def __init__(self, url: str) -> None:
        self.url, self.codes, self.stop = url, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.codes.append(call(self.url, "/predict", {"records": TEXTS}, timeout=10)[0])
            except OSError:
                self.codes.append(None)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(20)


def teammate(p, tmp_path):
    """A fresh clone of the bare origin with the DVC remote configured and `dvc pull` run."""
    fresh = tmp_path / "teammate"
    p.git("clone", "-q", str(p.origin), str(fresh), cwd=tmp_path)
    dvc = os.path.join(BIN, "dvc")
    p.sh(dvc, "remote", "add", "--local", "-f", "-d", "local", str(p.store), cwd=fresh)
    p.sh(dvc, "pull", "-q", cwd=fresh)
    return fresh


def test_a_killed_worker_is_not_ready_and_a_rollback_preempts_a_restart_that_hangs(tmp_path):
    """Items 5 and 6. v2 serves; its worker is killed with kill -9 under load and its restart
    hangs at import. /ready and /version say so at once (never 200 with the dead pid); a
    teammate's rollback deployed behind the hang serves within 5 s, and the hung worker is gone."""
    p = build_textserve(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    promote(p, v1)
    marker = tmp_path / "hang"
    hang_when(p, marker)
    v2 = release(p, "serving code that hangs at import on a bad host")
    promote(p, v2)
    target = tmp_path / "serving"
    p.ok("deploy", "--env", "production", "--target", str(target))  # materialises v2
    with serve_proc(p, target, tmp_path / "serve.log") as (url, _proc):
        info = serving(url, v2)
        with Load(url) as load:
            until(lambda: 200 in load.codes, "answers under load")
            marker.touch()
            os.kill(info["pid"], signal.SIGKILL)
            code, body, _ = until(lambda: (lambda r: r if r[0] == 503 else None)(call(url, "/ready")),
                                  "/ready to say the worker is gone", timeout=5)
            until(lambda: call(url, "/ready")[1].get("starting") == v2, "the restart of v2")
            for _ in range(5):  # for as long as the restart hangs: never ready, never the dead pid
                code, body, _ = call(url, "/ready")
                assert code == 503 and body["ready"] is False and body["release"] is None, body
                assert "exited (status -9)" in body["error"] and v2 in body["error"], body
                code, ver, _ = call(url, "/version")
                assert code == 503 and str(info["pid"]) not in str(ver) and "status -9" in ver["error"], ver
                metrics = call(url, "/metrics")[1]  # what the guard reads: nothing serves now
                assert "tether_requests_total" in metrics and "tether_release_info{" not in metrics, metrics
                time.sleep(0.2)
            assert call(url, "/predict", {"records": TEXTS})[0] == 503
            hung = procs_in(target / "releases" / v2)
            assert hung, "the restarted worker should be hanging in v2's import"

            fresh = teammate(p, tmp_path)
            p.ok("rollback", "--env", "production", *OPS, "--push", cwd=fresh)
            t0 = deploy(p, target, cwd=fresh)
            serving(url, v1, timeout=60)
            took = time.monotonic() - t0
        assert took < DEPLOY_TO_ANSWER_S, f"the rollback answered {took:.1f} s after its deploy"
        code, body, _ = call(url, "/ready")
        assert code == 200 and body["release"] == v1 and body["starting"] is None and body["error"] is None, body
        assert call(url, "/predict", {"records": TEXTS})[0] == 200
        until(lambda: not any(os.path.exists(f"/proc/{pid}") and pid in procs_in(target / "releases" / v2)
                              for pid in hung), "the hung worker stopped", timeout=10)
        assert 200 in load.codes and 503 in load.codes


def test_a_fix_forward_preempts_a_new_release_that_hangs_at_import(tmp_path):
    """Item 6: v1 serves; v2, deployed, hangs at import (v1 keeps serving, /ready says v2 is
    starting); the fix-forward v3 deployed behind it serves within 5 s."""
    p = build_textserve(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    promote(p, v1)
    target = tmp_path / "serving"
    marker = tmp_path / "hang"
    with serve_proc(p, target, tmp_path / "serve.log") as (url, proc):
        deploy(p, target)
        serving(url, v1)
        original = (p.root / "src/serve.py").read_text()
        hang_when(p, marker)
        v2 = release(p, "serving code that hangs at import here")
        promote(p, v2)
        marker.touch()
        deploy(p, target)
        until(lambda: call(url, "/ready")[1].get("starting") == v2, "v2 starting")
        code, body, _ = call(url, "/ready")
        assert code == 200 and body["release"] == v1, body  # the old release serves while v2 hangs
        (p.root / "src/serve.py").write_text(original)
        set_featurizer(p, "v2")
        v3 = release(p, "fix forward: no hang, bigrams")
        promote(p, v3)
        t0 = deploy(p, target)
        serving(url, v3, timeout=60)
        took = time.monotonic() - t0
        assert took < DEPLOY_TO_ANSWER_S, f"the fix-forward answered {took:.1f} s after its deploy"
        code, body, _ = call(url, "/predict", {"records": TEXTS})
        assert code == 200 and body["release"] == v3 and body["predictions"][0]["featurizer"] == "v2"
        until(lambda: not procs_in(target / "releases" / v2), "v2's hung worker stopped", timeout=10)
        assert call(url, "/ready")[1]["starting"] is None

        # SIGTERM (systemd, docker stop) while v2 hangs at import again: a clean stop, exit 0
        marker.unlink()  # promote's smoke gate imports the entrypoint too
        promote(p, v2)
        marker.touch()
        deploy(p, target)
        until(lambda: procs_in(target / "releases" / v2), "v2 hanging again")
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    text = (tmp_path / "serve.log").read_text()
    assert f"stopped starting {v2}: the server is stopping" in text and "stopped on SIGTERM" in text, text
    assert "Traceback" not in text and "Fatal Python error" not in text, text
    until(lambda: not procs_in(target / "releases" / v2), "no worker left behind", timeout=10)


def test_ctrl_c_stops_cleanly_a_busy_port_is_refused_naming_it_a_dropped_client_is_one_line(tmp_path):
    """Item 8 on the text classifier. Ctrl-C in a terminal (SIGINT to the foreground process
    group, the server's workers included) stops the server and every worker with no traceback
    and no fatal error, exit 0; a busy port is exit 4 naming it, before any worker starts; a
    client that drops mid-body is one log line."""
    import socket

    p, v1, target = served_project(tmp_path)
    log = tmp_path / "serve.log"
    with serve_proc(p, target, log, session=True) as (url, proc):
        serving(url, v1)
        port = int(url.rsplit(":", 1)[1])

        # a second server on the same port: refused, naming the port, nothing started
        busy = p.tether("serve", "--target", str(target), "--port", str(port), "--watch-interval", "0.2")
        assert busy.code == 4, (busy.code, busy.err)
        assert f"port {port}" in busy.err and "in use" in busy.err and "hint:" in busy.err, busy.err
        assert "serving" not in busy.err and "Errno" not in busy.err and "Traceback" not in busy.err, busy.err

        # a client that sends half of its declared body and hangs up
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"content-length: 1000\r\n\r\n{\"records\": [")
            time.sleep(0.3)  # the server is reading the body when the client goes
        until(lambda: "disconnected" in log.read_text(), "the dropped client logged")
        assert call(url, "/predict", {"records": TEXTS})[0] == 200  # and the server serves on

        workers = procs_in(target / "releases" / v1) + procs_in(target)
        assert workers, "the live worker and the spare"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        code = proc.wait(timeout=30)
        text = log.read_text()
    assert code == 0, (code, text)
    assert "Fatal Python error" not in text and "Traceback" not in text, text
    assert len([line for line in text.splitlines() if "disconnected" in line]) == 1, text
    until(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), "every worker stopped", timeout=10)


def test_a_target_that_never_appears_is_named_on_ready_and_ends_the_server_with_exit_3(tmp_path):
    """Item 7: `tether serve --target DIR` on a DIR that does not exist says so on /ready at once
    (naming DIR) and exits 3 naming it when nothing is deployed there within --target-wait; a DIR
    deployed to in time is served as before (every other serving test starts that way)."""
    from project import Project

    p = Project(tmp_path)
    p.root.mkdir()  # where p.tether runs: no repository is needed to serve
    missing = tmp_path / "srv" / "typo"
    log = tmp_path / "serve.log"
    with serve_proc(p, missing, log, "--target-wait", "4") as (url, proc):
        code, body, _ = call(url, "/ready")
        assert code == 503 and body["ready"] is False, body
        assert f"{missing} does not exist" in body["error"] and "4 s" in body["error"], body
        code, body, _ = call(url, "/predict", {"records": TEXTS})
        assert code == 503 and str(missing) in body["error"], body
        status = proc.wait(timeout=30)
    text = log.read_text()
    assert status == 3, (status, text)
    assert f"error: {missing} never appeared: nothing was deployed there within 4 s" in text, text
    assert "hint:" in text and "--target-wait" in text and "Traceback" not in text, text
    assert not missing.exists()  # serve created nothing
    bad = p.tether("serve", "--target", str(missing), "--target-wait", "-1")
    assert bad.code == 2 and "--target-wait" in bad.err, bad.err


class FakeMetrics:
    """A tiny HTTP server whose /metrics says whatever the test sets in `.body`: it stands for
    another server (or a proxy) that lies, not for tether's own code."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self
        self.body, self.scrapes = "", 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.scrapes += 1
                data = fake.body.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("content-type", "text/plain; version=0.0.4")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def lone_metrics(rid: str, requests: str = "500", errors: str = "0", bucket: str = "500") -> str:
    """/metrics of one environment served alone, as tether serve renders it."""
    lines = [f'tether_release_info{{release="{rid}"}} 1',
             f'tether_requests_total{{release="{rid}",code="200"}} {requests}',
             f'tether_request_errors_total{{release="{rid}"}} {errors}']
    lines += [f'tether_request_duration_seconds_bucket{{release="{rid}",le="{le}"}} {bucket}'
              for le in ("0.005", "0.1", "+Inf")]
    return "\n".join(lines) + "\n"


def test_a_guard_counts_impossible_metrics_as_failed_samples_and_rolls_back(project):
    """Item 9 on the reference project guarded alone (no canary): a /metrics whose counters are
    +Inf, NaN, negative or falling is a failed observation, never the guard's crash (exit 1);
    one more than failed_checks (1) in a row rolls production back to the last good release."""
    from project import promote_to, threshold_release

    p = project
    earlier = "fraud-detector@v1.0.0"
    promote_to(p, earlier)
    newer = threshold_release(p, 0.35)
    promote_to(p, newer)
    head = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"][0]
    rid = newer.replace("/", "--")
    fake = FakeMetrics()
    once = ("guard", "--env", "production", "--url", fake.url, "--once", "--json")
    try:
        honest = 500
        fake.body = lone_metrics(rid)  # a first, honest sample: the step's baseline
        res = p.tether(*once)
        assert res.code == 0 and res.json()["action"] == "hold", (res.code, res.out, res.err)
        for lie in (lone_metrics(rid, requests="+Inf"), lone_metrics(rid, bucket="NaN"),
                    lone_metrics(rid, requests="-3"), lone_metrics(rid, errors="900"),
                    lone_metrics(rid).replace('le="+Inf"} 500', 'le="+Inf"} 7')):
            fake.body = lie
            res = p.tether(*once)
            assert res.code == 0, (res.code, res.err)
            out = res.json()
            assert out["action"] == "hold" and "unusable metrics: 1 failed sample(s)" in out["why"], out
            assert [c["name"] for c in out["checks"] if c["ok"] is False] == ["metrics"], out
            honest += 200  # honest again, with enough new requests to judge: healthy, the count restarts
            fake.body = lone_metrics(rid, requests=str(honest), bucket=str(honest))
            res = p.tether(*once)
            assert res.code == 0 and res.json()["action"] == "hold", res.out
            assert "healthy" in res.json()["why"], res.out
        assert p.ok("history", "--env", "production", "--json").json()["environments"]["production"][
            "events"][0]["commit"] == head["commit"]  # nothing moved on one failed sample

        fake.body = lone_metrics(rid, requests="+Inf")
        assert p.tether(*once).json()["action"] == "hold"
        fake.body = lone_metrics(rid, requests="NaN")
        res = p.tether(*once)
    finally:
        fake.close()
    assert res.code == 0, res.err
    out = res.json()
    assert out["action"] == "rollback" and "unusable metrics (2 failed sample(s), 1 tolerated)" in out["why"], out
    ev = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"][0]
    assert ev["action"] == "rollback" and ev["release"] == earlier and ev["previous"] == newer, ev
    assert ev["approver"] == "tether-guard" and "tether_requests_total" in ev["reason"], ev


def canary_metrics(stable: str, canary: str, weight: str = "10", requests: str = "300") -> str:
    """/metrics of a server running production (stable) and a canary, as tether serve renders it."""
    lines = [f'tether_release_info{{release="{stable}",arm="stable"}} 1',
             f'tether_release_info{{release="{canary}",arm="canary"}} 1',
             f'tether_canary_weight{{release="{canary}",arm="canary"}} {weight}']
    for rid, arm in ((stable, "stable"), (canary, "canary")):
        lines += [f'tether_requests_total{{release="{rid}",arm="{arm}",code="200"}} {requests}',
                  f'tether_request_errors_total{{release="{rid}",arm="{arm}"}} 0',
                  f'tether_request_duration_seconds_bucket{{release="{rid}",arm="{arm}",le="+Inf"}} {requests}']
    return "\n".join(lines) + "\n"


def test_a_canary_guard_counts_a_lying_weight_or_counter_as_failed_and_rolls_the_canary_back(tmp_path):
    """Item 9 on the text classifier with a canary in front of production (canaryhelp's shape):
    a weight of NaN, then a canary counter of +Inf, are two failed samples in a row: the canary
    is set to weight 0 (a rollback move with the evidence), production is untouched."""
    from canaryhelp import build_canary_project, set_alpha
    from canaryhelp import release as make_release

    p = build_canary_project(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    promote(p, v1)
    set_alpha(p, 0.8)
    v2 = make_release(p, "alpha 0.8")
    p.ok("promote", v2, "--env", "canary", *OPS, "--allow-regression", "test")
    stable, canary = v1.replace("/", "--"), v2.replace("/", "--")
    fake = FakeMetrics()
    once = ("guard", "--env", "canary", "--url", fake.url, "--once", "--json")
    try:
        fake.body = canary_metrics(stable, canary)
        res = p.tether(*once)
        assert res.code == 0 and res.json()["action"] == "hold", (res.out, res.err)
        fake.body = canary_metrics(stable, canary, weight="NaN")
        res = p.tether(*once)
        assert res.code == 0, res.err
        out = res.json()
        assert out["action"] == "hold" and "unusable metrics: 1 failed sample(s)" in out["why"], out
        assert "tether_canary_weight" in out["checks"][0]["detail"], out
        fake.body = canary_metrics(stable, canary, requests="+Inf")
        res = p.tether(*once)
    finally:
        fake.close()
    assert res.code == 0, res.err
    out = res.json()
    assert out["action"] == "rollback" and out["weight"] == 0 and out["commit"], out
    ev = p.ok("history", "--env", "canary", "--json").json()["environments"]["canary"]["events"][0]
    assert ev["release"] == v2 and "tether_requests_total" in ev["reason"] and ev["approver"] == "tether-guard", ev
    prod = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"][0]
    assert prod["release"] == v1
