"""The Open Inference Protocol (v2) on `tether serve`, driven by a real protocol client
(tritonclient's HTTP client) as KServe's and Triton's users would: on the reference model and on
the text classifier served by its own entrypoint, the same answers as /predict, the live release
in the metadata, a hot swap seen through v2, and every bad input a 400 with `{"error": ...}`."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from project import promote_to, threshold_release
from servehelp import OPS, call, serve, serving
from test_serve import RECORD
from textserve import build_textserve

tritonhttp = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

V1 = "fraud-detector@v1.0.0"
RECORD2 = {**RECORD, "amount": 12.5, "hour": 14, "foreign": 0, "online": 0, "device_risk_score": 0.05}
NP = {"FP64": np.float64, "INT64": np.int64, "BOOL": np.bool_, "BYTES": np.object_}


def client(url: str):
    return tritonhttp.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=60)


def tensors(meta: dict, records: list[dict]) -> list:
    """One named input per feature, shape [n], the datatype the metadata names (JSON, not binary)."""
    out = []
    for inp in meta["inputs"]:
        col = np.array([r[inp["name"]] for r in records], dtype=NP[inp["datatype"]])
        t = tritonhttp.InferInput(inp["name"], [len(records)], inp["datatype"])
        t.set_data_from_numpy(col, binary_data=False)
        out.append(t)
    return out


def infer(c, meta: dict, records: list[dict], **kw):
    return c.infer(meta["name"], tensors(meta, records), request_id="req-1", **kw)


def body(records: list[dict], dtypes: dict, **over) -> dict:
    """A raw v2 request (for the bad inputs a client would refuse to build)."""
    inputs = [{"name": k, "shape": [len(records)], "datatype": dtypes[k], "data": [r[k] for r in records]}
              for k in records[0]]
    return {"id": "raw", "inputs": inputs, **over}


def post(url: str, path: str, chunks: list[bytes], declared: int | None = None):
    """POST raw chunks: with `declared`, that Content-Length and only these bytes sent (a server
    that read the body first would hang); without, chunked transfer encoding."""
    import http.client
    from urllib.parse import urlparse

    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    if declared is None:
        conn.request("POST", path, body=iter(chunks), headers={"content-type": "application/json"},
                     encode_chunked=True)
    else:
        conn.putrequest("POST", path)
        conn.putheader("content-type", "application/json")
        conn.putheader("content-length", str(declared))
        conn.endheaders()
        conn.send(b"".join(chunks))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def deploy(p, target):
    res = p.tether("deploy", "--env", "production", "--target", str(target))
    assert res.code == 0, res.err


def test_reference_model_over_v2_matches_predict_and_follows_a_hot_swap(project, tmp_path):
    p, target = project, tmp_path / "serving"
    promote_to(p, V1)
    with serve(p, target, tmp_path / "serve.log") as url:
        c = client(url)
        assert c.is_server_live() and not c.is_server_ready()  # nothing deployed yet: 4xx, false
        deploy(p, target)
        serving(url, V1)
        assert c.is_server_ready() and c.is_model_ready("fraud-detector")
        assert c.is_model_ready("fraud-detector", "1.0.0") and not c.is_model_ready("fraud-detector", "9.9.9")
        meta = c.get_model_metadata("fraud-detector")
        assert meta["name"] == "fraud-detector" and meta["versions"] == ["1.0.0"] and meta["platform"] == "tether"
        assert meta["parameters"]["release"] == V1
        assert [i["name"] for i in meta["inputs"]] == list(RECORD)
        assert {i["datatype"] for i in meta["inputs"]} <= {"FP64", "INT64", "BOOL", "BYTES"}
        assert all(i["shape"] == [-1] for i in meta["inputs"])

        res = infer(c, meta, [RECORD, RECORD2])
        want = call(url, "/predict", {"records": [RECORD, RECORD2]})[1]
        r = res.get_response()
        assert r["model_name"] == "fraud-detector" and r["model_version"] == "1.0.0" and r["id"] == "req-1"
        assert res.as_numpy("score").shape == (2,)
        assert res.as_numpy("score").tolist() == want["scores"]
        assert res.as_numpy("decision").tolist() == want["decisions"]
        versioned = infer(c, meta, [RECORD, RECORD2], model_version="1.0.0")
        assert versioned.as_numpy("score").tolist() == want["scores"]
        only = infer(c, meta, [RECORD], outputs=[tritonhttp.InferRequestedOutput("score", binary_data=False)])
        assert [o["name"] for o in only.get_response()["outputs"]] == ["score"]

        for call_, status in ((lambda: infer(c, meta, [RECORD], model_version="9.9.9"), "404"),
                              (lambda: c.infer("no-such-model", tensors(meta, [RECORD])), "404"),
                              (lambda: c.get_model_metadata("no-such-model"), "404")):
            with pytest.raises(InferenceServerException) as exc:
                call_()
            assert exc.value.status() == status, exc.value
        assert "9.9.9" in str(call(url, "/v2/models/fraud-detector/versions/9.9.9/infer",
                                   body([RECORD], {k: "FP64" for k in RECORD}))[1]["error"])

        # hot swap: a deploy while requests flow; every request answered, v2 sees the new release
        v2 = threshold_release(p, 0.9)
        promote_to(p, v2)
        t = threading.Thread(target=deploy, args=(p, target))
        t.start()
        versions = []
        while not versions or versions[-1] != "1.0.1":
            got = infer(c, meta, [RECORD, RECORD2])  # raises on any failed request
            versions.append(got.get_response()["model_version"])
            assert got.as_numpy("score").tolist() == want["scores"]  # same weights, new threshold
            assert len(versions) < 5000, "the swap never showed through v2"
        t.join()
        assert set(versions) == {"1.0.0", "1.0.1"}
        meta2 = c.get_model_metadata("fraud-detector")
        assert meta2["versions"] == ["1.0.1"] and meta2["parameters"]["release"] == v2
        with pytest.raises(InferenceServerException) as exc:
            infer(c, meta, [RECORD], model_version="1.0.0")  # no longer live
        assert exc.value.status() == "404"
        metrics = call(url, "/metrics")[1]
        assert f'tether_requests_total{{release="{v2}",code="200"}}' in metrics
        c.close()


def test_bad_v2_input_is_a_400_with_the_error_body(project, tmp_path):
    p, target = project, tmp_path / "serving"
    promote_to(p, V1)
    with serve(p, target, tmp_path / "serve.log", "--max-body-bytes", "100000") as url:
        deploy(p, target)
        serving(url, V1)
        meta = call(url, "/v2/models/fraud-detector")[1]
        dtypes = {i["name"]: i["datatype"] for i in meta["inputs"]}
        path = "/v2/models/fraud-detector/infer"
        ok = body([RECORD, RECORD2], dtypes)
        code, answer, _ = call(url, path, ok)
        assert code == 200 and answer["id"] == "raw", answer
        missing = body([{k: v for k, v in RECORD.items() if k != "hour"}], dtypes)
        wrong_type = body([RECORD], {**dtypes, "amount": "BYTES"})
        bad_value = body([{**RECORD, "amount": "lots"}], {**dtypes, "amount": "BYTES"})
        shape = json.loads(json.dumps(ok))
        shape["inputs"][0]["shape"] = [3]
        ragged = json.loads(json.dumps(ok))
        ragged["inputs"][1]["data"] = ragged["inputs"][1]["data"][:1]
        ragged["inputs"][1]["shape"] = [1]
        cases = {
            "missing feature": (json.dumps(missing).encode(), "hour"),
            "wrong datatype": (json.dumps(wrong_type).encode(), "amount"),
            "value of another type": (json.dumps(bad_value).encode(), "amount"),
            "shape mismatch": (json.dumps(shape).encode(), "shape"),
            "rows differ": (json.dumps(ragged).encode(), "rows"),
            "NaN": (json.dumps(body([{**RECORD, "amount": float("nan")}], dtypes)).encode(), "NaN"),
            "unknown datatype": (json.dumps(body([RECORD], {**dtypes, "amount": "FP128"})).encode(), "datatype"),
            "unknown field": (json.dumps({**ok, "extra": 1}).encode(), "extra"),
            "no inputs": (b'{"inputs": []}', "inputs"),
            "non-JSON": (b"{not json", "JSON"),
            "unknown output": (json.dumps({**ok, "outputs": [{"name": "nope"}]}).encode(), "nope"),
        }
        for what, (raw, word) in cases.items():
            code, answer, _ = call(url, path, raw=raw)
            assert code == 400 and isinstance(answer, dict) and word in answer["error"], (what, code, answer)
        # too large (the same limit as /predict): answered from Content-Length before the body is
        # read, and a chunked body with no length cut off at the limit
        code, answer = post(url, path, [b'{"inputs": [{"data": ["' + b"x" * 1000], declared=50 << 20)
        assert code == 400 and "larger" in json.loads(answer)["error"], (code, answer[:200])
        code, answer = post(url, path, [b'{"inputs": [{"data": ["'] + [b"x" * 30_000] * 4 + [b'"]}]}'])
        assert code == 400 and "larger" in json.loads(answer)["error"], (code, answer[:200])
        assert "100000" in json.loads(answer)["error"]  # --max-body-bytes, as /predict's:
        assert post(url, "/predict", [b'{"records": ['], declared=100_001)[0] == 413
        code, answer, _ = call(url, "/v2/models/nope/infer", ok)
        assert code == 404 and "nope" in answer["error"]
        # nothing of that reached 5xx, and /predict answers as before
        code, first, _ = call(url, "/predict", {"records": [RECORD]})
        assert code == 200 and first["release"] == V1


def test_text_classifier_with_its_own_entrypoint_over_v2(tmp_path):
    p = build_textserve(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", v1, "--env", "production", *OPS, "--skip-staging", "test")
    target = tmp_path / "serving"
    texts = [{"text": "Great wonderful movie, really loved the cast"}, {"text": "awful boring plot and a dull ending"}]
    with serve(p, target, tmp_path / "serve.log") as url:
        p.ok("deploy", "--env", "production", "--target", str(target))
        serving(url, v1)
        c = client(url)
        meta = c.get_model_metadata("textclf")
        assert meta["versions"] == ["1.0.0"] and meta["parameters"]["release"] == v1
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        res = infer(c, meta, texts)
        want = call(url, "/predict", {"records": texts})[1]["predictions"]
        assert res.get_response()["model_version"] == "1.0.0"
        assert res.as_numpy("score").tolist() == [w["score"] for w in want]
        assert res.as_numpy("decision").tolist() == [w["decision"] for w in want]
        assert res.as_numpy("label").tolist() == [w["label"] for w in want] == ["pos", "neg"]
        assert res.as_numpy("featurizer").tolist() == ["v1", "v1"]
        assert res.as_numpy("tokens").tolist() == [w["tokens"] for w in want]
        code, answer, _ = call(url, "/v2/models/textclf/infer",
                               {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x" * 5001]}]})
        assert code == 400 and "text" in answer["error"], answer
        c.close()


def test_a_canary_arm_is_a_second_version_over_v2(tmp_path):
    from canaryhelp import build_canary_project, release

    p = build_canary_project(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", v1, "--env", "production", *OPS, "--skip-staging", "first release")
    stable, canary = tmp_path / "stable", tmp_path / "canary"
    p.ok("deploy", "--env", "production", "--target", str(stable))
    params = p.root / "params.yaml"
    params.write_text(params.read_text().replace("alpha: 1.0", "alpha: 0.5"))
    v2 = release(p, "alpha 0.5")
    p.ok("promote", v2, "--env", "canary", *OPS, "--allow-regression", "a canary")
    p.ok("deploy", "--env", "canary", "--target", str(canary))
    with serve(p, stable, tmp_path / "serve.log", "--canary-target", str(canary)) as url:
        serving(url, v1)
        c = client(url)
        meta = {}
        for _ in range(600):
            meta = c.get_model_metadata("textclf")
            if meta["versions"] == ["1.0.0", "1.1.0"]:
                break
            threading.Event().wait(0.1)
        assert meta["versions"] == ["1.0.0", "1.1.0"] and meta["parameters"]["release"] == v1
        assert c.get_model_metadata("textclf", "1.1.0")["parameters"]["release"] == v2
        texts = [{"text": "a fine film"}, {"text": "dull"}]
        for version, arm in (("1.0.0", "stable"), ("1.1.0", "canary")):
            code, answer, headers = call(url, f"/v2/models/textclf/versions/{version}/infer",
                                         {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                                      "data": [t["text"] for t in texts]}]})
            assert code == 200 and answer["model_version"] == version and headers["x-tether-arm"] == arm, answer
        c.close()
