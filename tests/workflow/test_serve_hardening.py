"""What a service owner expects of /predict, and a server that trusts only what deploy derived
from git: a bundle tampered consistently (a file and its own manifest.json) is refused, never
answered from under load, and served again once a deploy repairs it."""

from __future__ import annotations

import hashlib
import json
import os
import threading

from project import promote_to, threshold_release
from servehelp import OPS, call, serve, serving, until
from test_serve import RECORD

from tether.servedir.layout import switch_current

V1 = "fraud-detector@v1.0.0"


def deploy(p, target):
    res = p.tether("deploy", "--env", "production", "--target", str(target))
    assert res.code == 0, res.err
    return res


def tamper_consistently(bundle, name: str, data: bytes) -> None:
    """Replace a bundle file and rewrite the bundle's manifest.json to match it, as someone with
    write access to the serving host would: the bundle's own check passes."""
    for f in (bundle / name, bundle / "manifest.json"):
        f.chmod(0o644)
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))


def test_a_consistently_tampered_bundle_is_refused_under_load_and_served_after_repair(project, tmp_path):
    p = project
    target = tmp_path / "serving"
    promote_to(p, V1)
    deploy(p, target)
    v2 = threshold_release(p, 0.9)
    promote_to(p, v2)
    deploy(p, target)
    p.ok("rollback", "--env", "production", *OPS)
    deploy(p, target)  # v1 live, v2 still materialised
    v2_dir = target / "releases" / v2
    bundle = v2_dir / "models/fraud-detector"
    from tether.runtime.bundle import verify_bundle

    tamper_consistently(bundle, "threshold.json", b'{"value": 0.0, "source": "tampered"}\n')
    verify_bundle(bundle)  # the bundle's own manifest.json agrees with the tampered file

    with serve(p, target, tmp_path / "serve.log") as url:
        serving(url, V1)
        seen, bad, stop = [], [], threading.Event()

        def load():
            while not stop.is_set():
                code, body, headers = call(url, "/predict", {"records": [RECORD]})
                if code != 200:
                    bad.append((code, body))
                else:
                    seen.append((headers["x-tether-release"], body["release"], body["threshold"]))

        clients = [threading.Thread(target=load) for _ in range(3)]
        for c in clients:
            c.start()
        try:
            switch_current(target, v2)  # `current` names the tampered release
            code, ready, _ = until(lambda: (lambda r: r if r[1].get("error") else None)(call(url, "/ready")),
                                   "the refusal")
            assert code == 200 and ready["release"] == V1, ready  # still serving v1
            assert v2 in ready["error"] and "does not match the manifest" in ready["error"], ready
            n = len(seen)
            until(lambda: len(seen) > n + 20, "more requests while the tampered release is current")
            assert call(url, "/version")[1]["release"] == V1

            # a deploy repairs it (its stamp no longer verifies, so it is rebuilt), and it is served;
            # production was rolled back away from v2 (reason "test"): re-promoting it quotes that
            p.ok("promote", v2, "--env", "production", "--approver", "ci", "--reason", "repaired", "--skip-staging",
                 "test", "--allow-regression", "test", "--override-rollback", "test: the bundle was repaired")
            deploy(p, target)
            serving(url, v2)
            n = len(seen)
            until(lambda: len(seen) > n + 20, "requests on the repaired release")
        finally:
            stop.set()
            for c in clients:
                c.join()
    assert not bad, bad[:3]
    assert all(h == r for h, r, _ in seen)
    assert {(r, t) for _, r, t in seen} == {(V1, 0.3), (v2, 0.9)}  # never the tampered 0.0
    assert json.loads((bundle / "threshold.json").read_text())["value"] == 0.9


def test_a_changed_code_file_or_a_stray_file_in_the_release_tree_is_refused(project, tmp_path):
    """The git part of a release (code, dvc.yaml, the entrypoint) must hash to the manifest's
    git tree id: an edited module or an added one is refused by serve and verify."""
    from tether.servedir.verify import verify_release_dir
    from tether.errors import IntegrityError

    p = project
    target = tmp_path / "serving"
    promote_to(p, V1)
    deploy(p, target)
    root = target / "releases" / V1
    verify_release_dir(target, root)
    code = root / "src/fraud_detector/preprocess.py"
    original = code.read_bytes()
    for change in ("edit", "add"):
        if change == "edit":
            code.chmod(0o644)
            code.write_bytes(original + b"\nSCALE = 2\n")
        else:
            code.write_bytes(original)
            (root / "src/sitecustomize.py").write_text("print('hello')\n")
        try:
            verify_release_dir(target, root)
        except IntegrityError as exc:
            assert "git tree" in exc.message, exc.message
        else:
            raise AssertionError(f"a release with an {change}ed file verified")
    os.remove(root / "src/sitecustomize.py")
    verify_release_dir(target, root)
    # the recorded manifest is anchored in deploy.log: a rewritten .tether/manifest.json is refused
    mf = root / ".tether/manifest.json"
    mf.chmod(0o644)
    manifest = json.loads(mf.read_text())
    manifest["components"]["threshold"]["value"] = 0.01
    mf.write_text(json.dumps(manifest))
    try:
        verify_release_dir(target, root)
    except IntegrityError as exc:
        assert "stamp" in exc.message or "deploy.log" in exc.message
    else:
        raise AssertionError("a rewritten manifest verified")


BAD = [
    # (body or raw bytes, field the 422 must name)
    ({"records": [{**RECORD, "hour": int("9" * 400)}]}, "hour"),
    ({"records": [{**RECORD, "amount": int("9" * 400)}]}, "amount"),
    ({"records": [{**RECORD, "amount": 1e308}]}, "amount"),
    ({"records": [{**RECORD, "amount": -1e308}]}, "amount"),
    ({"records": [{**RECORD, "hour": 1e19}]}, "hour"),
    ({"records": [{**RECORD, "hour": -1e19}]}, "hour"),
    ({"records": [{**RECORD, "hour": 2.5}]}, "hour"),
    ({"records": [{**RECORD, "hour": True}]}, "hour"),
    ({"records": [{**RECORD, "amount": "12"}]}, "amount"),
    ({"records": [{**RECORD, "amount": None}]}, "amount"),
    ({"records": [{**RECORD, "amount": [1]}]}, "amount"),
    (json.dumps({"records": [{**RECORD, "amount": 1.0}]}).replace("1.0", "NaN").encode(), "amount"),
    (json.dumps({"records": [{**RECORD, "amount": 1.0}]}).replace("1.0", "Infinity").encode(), "amount"),
    (json.dumps({"records": [{**RECORD, "amount": 1.0}]}).replace("1.0", "1e400").encode(), "amount"),
    (json.dumps({"records": [{**RECORD, "hour": 1}]}).replace(": 1,", ": " + "9" * 5000 + ",").encode(), "hour"),
    ({"records": [{**RECORD, "zip": 1}]}, "zip"),
    ({"records": [1]}, "records"),
    ({"records": "all"}, "records"),
    ({"records": []}, "records"),
    ([RECORD], "records"),
    (b"{not json", "body"),
    (b"\xff\xfe", "body"),
    (b"[" * 100000 + b"]" * 100000, "body"),
    ({"records": [RECORD] * 1001}, "records"),
]


def test_bad_input_is_a_4xx_naming_the_field_never_a_5xx(project, tmp_path):
    p = project
    target = tmp_path / "serving"
    promote_to(p, V1)
    deploy(p, target)
    with serve(p, target, tmp_path / "serve.log", "--max-body-bytes", "300000") as url:
        serving(url, V1)
        for body, field in BAD:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            code, detail, headers = call(url, "/predict", raw=raw)
            assert code == 422, (raw[:120], code, detail)
            assert field in json.dumps(detail), (raw[:120], detail)
            assert headers["x-tether-release"] == V1
            assert len(json.dumps(detail)) < 5000, "an error must not echo the input back"
        # too large: a 50 MB value is answered 413 from its Content-Length, before the body is read
        code, detail = post_declared(url, 50 << 20, b'{"records": [{"amount": "' + b"x" * 1000)
        assert code == 413 and len(detail) < 1000, (code, detail[:200])
        # and a chunked body with no length is cut off at the limit
        code, detail = post_chunked(url, [b'{"records": [{"amount": "'] + [b"x" * 50_000] * 8 + [b'"}]}'])
        assert code == 413 and len(detail) < 1000, (code, detail[:200])
        code, ok, _ = call(url, "/predict", {"records": [RECORD]})
        assert code == 200 and ok["release"] == V1
        metrics = call(url, "/metrics")[1]
        assert f'tether_requests_total{{release="{V1}",code="422"}} {len(BAD)}' in metrics, metrics
        assert f'tether_requests_total{{release="{V1}",code="413"}} 2' in metrics
        assert f'tether_request_errors_total{{release="{V1}"}} {len(BAD) + 2}' in metrics
        assert f'tether_request_duration_seconds_count{{release="{V1}"}} {len(BAD) + 3}' in metrics


def _conn(url):
    import http.client
    from urllib.parse import urlparse

    u = urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def post_declared(url, length: int, first: bytes):
    """Declare `length` bytes, send only the first few: a server that reads the body first hangs."""
    conn = _conn(url)
    conn.putrequest("POST", "/predict")
    conn.putheader("content-type", "application/json")
    conn.putheader("content-length", str(length))
    conn.endheaders()
    conn.send(first)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def post_chunked(url, chunks):
    conn = _conn(url)
    conn.request("POST", "/predict", body=iter(chunks), headers={"content-type": "application/json"},
                 encode_chunked=True)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_a_recorded_manifest_rewritten_with_its_stamp_and_log_is_caught_by_the_clone(project, tmp_path):
    """With deploy --repo, the clone in DIR/.tether/repo is a second witness: a manifest whose
    stamp and deploy.log line were rewritten to match it still differs from the one derived from
    the tag's commit."""
    from tether.servedir.layout import log_event
    from tether.servedir.stamp import manifest_digest
    from tether.servedir.verify import verify_release_dir
    from tether.errors import IntegrityError

    p = project
    promote_to(p, V1)
    p.git("push", "-q", "origin", "production")
    from test_deploy_target import preclone

    target = tmp_path / "host"
    preclone(p, target)
    res = p.tether("deploy", "--env", "production", "--target", str(target), "--repo", str(p.origin), cwd=tmp_path)
    assert res.code == 0, res.err
    root = target / "releases" / V1
    verify_release_dir(target, root)
    mf, stamp_file = root / ".tether/manifest.json", root / ".tether/stamp.json"
    manifest = json.loads(mf.read_text())
    manifest["components"]["threshold"]["value"] = 0.01  # what /version and the decisions would say
    stamp = json.loads(stamp_file.read_text())
    stamp["manifest_sha256"] = manifest_digest(manifest)
    for f, data in ((mf, manifest), (stamp_file, stamp)):
        f.chmod(0o644)
        f.write_text(json.dumps(data))
    log_event(target, {"to": V1, "outcome": "switched", "manifest_sha256": manifest_digest(manifest)})
    try:
        verify_release_dir(target, root)
    except IntegrityError as exc:
        assert "derived from" in exc.message, exc.message
    else:
        raise AssertionError("a consistently rewritten manifest verified")
