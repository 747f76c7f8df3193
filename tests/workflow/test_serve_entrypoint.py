"""A text classifier served by the code pinned in its own release: raw text in, the project's
own featurisation (src/textclf/featurize.py) through its entrypoint (src/serve.py:Model), a
pickle model. Deploy v1, then v2 with other featurisation code, roll back: every response comes
from the code of the release that answered, never from the workspace's."""

from __future__ import annotations

import time

from servehelp import OPS, call, serve, serving, until
from textserve import build_textserve, set_featurizer

TEXTS = [{"text": "Great wonderful movie, really loved the cast"}, {"text": "awful boring plot and a dull ending"}]


def test_text_classifier_served_by_its_own_release_code_v1_v2_rollback(tmp_path):
    p = build_textserve(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    assert v1 == "textclf@v1.0.0"
    out = p.ok("promote", v1, "--env", "production", *OPS, "--skip-staging", "test").out
    # the smoke gate ran the entrypoint in a worker and reproduced the recorded predictions
    assert "gate smoke: ok - entrypoint reproduces its eval predictions" in out, out
    target = tmp_path / "serving"

    with serve(p, target, tmp_path / "serve.log") as url:
        # --smoke: deploy runs the smoke test in a worker before the switch, and materialises the
        # eval slice, so the serving worker runs it again before it takes traffic
        out = p.ok("deploy", "--env", "production", "--target", str(target), "--smoke").err
        assert "smoke-testing textclf@v1.0.0 in a worker" in out, out
        info = serving(url, v1)
        assert info["loader"] == "entrypoint" and info["version"] == "1.0.0" and info["started_at"]
        assert info["smoke"].startswith("entrypoint reproduces its eval predictions"), info
        code, first, headers = call(url, "/predict", {"records": TEXTS})
        assert code == 200, first
        assert headers["x-tether-release"] == v1 and first["release"] == v1
        assert [r["featurizer"] for r in first["predictions"]] == ["v1", "v1"]
        assert first["predictions"][0]["label"] == "pos" and first["predictions"][1]["label"] == "neg"
        assert first["predictions"][0]["tokens"] == 7  # v1: words only

        # the schema the entrypoint declares: a string, nothing else
        for bad, field in (({"text": 42}, "text"), ({}, "text"), ({"text": "ok", "extra": 1}, "extra"),
                           ({"text": None}, "text"), ({"text": "x" * 5001}, "text")):
            code, body, _ = call(url, "/predict", {"records": [bad]})
            assert code == 422 and field in str(body), (bad, code, body)

        # v2: different featurisation code, retrained
        set_featurizer(p, "v2")
        p.dvc("repro", "-q")
        p.commit_all("featurisation v2: words and bigrams")
        v2 = p.ok("release", "--push", "--json").json()["tag"]
        assert v2 == "textclf@v1.1.0"
        p.ok("promote", v2, "--env", "production", *OPS, "--skip-staging", "test", "--allow-regression", "test")
        p.ok("deploy", "--env", "production", "--target", str(target))
        serving(url, v2)
        code, second, headers = call(url, "/predict", {"records": TEXTS})
        assert code == 200 and headers["x-tether-release"] == v2
        assert [r["featurizer"] for r in second["predictions"]] == ["v2", "v2"]
        assert second["predictions"][0]["tokens"] == 13  # 7 words + 6 bigrams
        assert second["scores"] != first["scores"]

        # roll back: the workspace keeps v2's code, the server runs v1's again
        p.ok("rollback", "--env", "production", *OPS)
        p.ok("deploy", "--env", "production", "--target", str(target))
        serving(url, v1)
        assert "v2" in (p.root / "src/textclf/featurize.py").read_text()
        code, again, headers = call(url, "/predict", {"records": TEXTS})
        assert code == 200 and headers["x-tether-release"] == v1
        assert again == first  # the whole response: v1's code, weights and threshold

        metrics = call(url, "/metrics")[1]
        assert f'tether_requests_total{{release="{v1}",code="200"}} 2' in metrics, metrics
        assert f'tether_requests_total{{release="{v2}",code="200"}} 1' in metrics
        assert f'tether_requests_total{{release="{v1}",code="422"}} 5' in metrics
        assert f'tether_score_count{{release="{v1}"}} 4' in metrics
        assert f'tether_release_info{{release="{v1}"}} 1' in metrics
    assert not list((target / "releases").rglob("__pycache__")), "a worker wrote into a release tree"


def test_a_pickle_without_entrypoint_is_refused_with_the_reason_at_once(tmp_path):
    p = build_textserve(tmp_path / "p")
    dvc_yaml = p.root / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("        serve:\n          entrypoint: src/serve.py:Model\n",
                                                     "        smoke: false\n"))
    p.commit_all("no entrypoint")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", tag, "--env", "production", *OPS, "--skip-staging", "test")
    target = tmp_path / "serving"
    with serve(p, target, tmp_path / "serve.log") as url:
        p.ok("deploy", "--env", "production", "--target", str(target))
        t0 = time.monotonic()
        code, body, _ = until(lambda: (lambda r: r if r[1].get("error") else None)(call(url, "/ready")), "a reason")
        assert code == 503 and "pickle" in body["error"] and tag in body["error"], body
        assert time.monotonic() - t0 < 10
        code, body, _ = call(url, "/predict", {"records": TEXTS[:1]})
        assert code == 503 and "pickle" in body["error"]


CHURN_SERVE = '''\
import math
import pickle


class Model:
    def __init__(self, bundle_dir):
        # the artifact is a file (path: models/churn.pkl): bundle_dir is that file
        self.m = pickle.loads(bundle_dir.read_bytes())

    def predict(self, records):
        out = []
        for r in records:
            z = self.m["bias"] + self.m["w"][0] * r["tenure"] + self.m["w"][1] * r["spend"]
            out.append({"score": 1 / (1 + math.exp(-z))})
        return out
'''


def test_the_issue_shape_a_file_artifact_with_an_entrypoint_and_no_schema(tmp_path):
    """`path: <file>.pkl` + `meta.tether.serve.entrypoint: src/serve.py:Model`, exactly as the
    issue writes it; no schema, so records reach predict() as sent and its KeyError is a 422."""
    from shapes import build_churn, churn_model

    p = build_churn(tmp_path / "p", keep="dvc")
    dvc_yaml = p.root / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace(
        "        smoke: false\n", "        smoke: false\n        serve:\n          entrypoint: src/serve.py:Model\n"))
    (p.root / "src/serve.py").write_text(CHURN_SERVE)
    p.commit_all("serve churn through its own entrypoint")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", tag, "--env", "production", *OPS, "--skip-staging", "test")
    target = tmp_path / "serving"
    with serve(p, target, tmp_path / "serve.log") as url:
        p.ok("deploy", "--env", "production", "--target", str(target))
        assert serving(url, tag)["loader"] == "entrypoint"
        code, body, _ = call(url, "/predict", {"records": [{"tenure": 10, "spend": 50}]})
        assert code == 200, body
        import math
        import pickle

        m = pickle.loads(churn_model(1))
        want = 1 / (1 + math.exp(-(m["bias"] + m["w"][0] * 10 + m["w"][1] * 50)))
        assert abs(body["scores"][0] - want) < 1e-12 and "decisions" not in body
        code, body, _ = call(url, "/predict", {"records": [{"tenure": 10}]})
        assert code == 422 and "the model rejected the input" in str(body), body
