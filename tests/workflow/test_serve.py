"""`tether serve`: a real HTTP server over DIR/current that follows deploys and rollbacks."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from project import promote_to, threshold_release
from s3server import free_port

RECORD = {"amount": 250.0, "hour": 3, "merchant_category": 7, "distance_from_home_km": 120.5, "card_age_days": 40,
          "txn_count_24h": 9, "foreign": 1, "online": 1, "amount_to_avg_ratio": 4.2, "device_risk_score": 0.7}


def call(url, path, body=None):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_for(url, version, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, body = call(url, "/version")
        if code == 200 and body["version"] == version:
            return body
        time.sleep(0.2)
    raise AssertionError(f"server never served {version}")


@pytest.fixture
def server(project, tmp_path):
    target = tmp_path / "serving"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tether.cli", "serve", "--target", str(target), "--port", str(port),
                             "--watch-interval", "0.2"], cwd=project.root, env=project.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/ready", timeout=1)
        except urllib.error.HTTPError:
            break  # 503: up, nothing loaded yet
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError("server did not start") from None
            time.sleep(0.2)
            continue
        break
    yield project, target, url
    proc.terminate()
    proc.wait(timeout=10)


def test_serving_follows_deploys_and_rollbacks(server):
    p, target, url = server
    assert call(url, "/ready")[0] == 503  # nothing deployed yet
    promote_to(p, "fraud-detector@v1.0.0")
    assert p.tether("deploy", "--env", "production", "--target", str(target)).code == 0
    v1 = wait_for(url, "1.0.0")
    code, ready = call(url, "/ready")
    assert code == 200 and ready["ready"] and ready["release"] == "fraud-detector@v1.0.0" and ready["error"] is None
    code, first = call(url, "/predict", {"records": [RECORD]})
    assert code == 200, first
    assert first["threshold"] == 0.3 and 0 <= first["scores"][0] <= 1

    v2 = threshold_release(p, 0.9)
    promote_to(p, v2)
    assert p.tether("deploy", "--env", "production", "--target", str(target)).code == 0
    body = wait_for(url, "1.0.1")
    assert body["commit"] != v1["commit"] and body["manifest_sha256"] != v1["manifest_sha256"]
    code, second = call(url, "/predict", {"records": [RECORD]})
    assert second["threshold"] == 0.9 and second["scores"] == first["scores"]  # same weights, new threshold

    p.ok("rollback", "--env", "production", "--approver", "ops", "--reason", "threshold too high")
    assert p.tether("deploy", "--env", "production", "--target", str(target)).code == 0
    wait_for(url, "1.0.0")
    assert call(url, "/predict", {"records": [RECORD]})[1] == first  # the whole tuple came back


@pytest.mark.parametrize(
    "body,field",
    [
        ({"records": [{**RECORD, "amount": "lots"}]}, "amount"),
        ({"records": [{k: v for k, v in RECORD.items() if k != "hour"}]}, "hour"),
        ({"records": [{**RECORD, "zip": 12345}]}, "zip"),
        ({"records": [{**RECORD, "hour": 2.5}]}, "hour"),
        ({"records": []}, "records"),
        ({"rows": [RECORD]}, "records"),
    ],
)
def test_bad_requests_get_a_422_naming_the_field(server, body, field):
    p, target, url = server
    promote_to(p, "fraud-detector@v1.0.0")
    assert p.tether("deploy", "--env", "production", "--target", str(target)).code == 0
    wait_for(url, "1.0.0")
    code, detail = call(url, "/predict", body)
    assert code == 422
    assert field in json.dumps(detail)
