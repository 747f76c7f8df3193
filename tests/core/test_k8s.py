"""tether.core.k8s: what an environment renders to, and what it refuses. (The manifests' validity
against Kubernetes' and KServe's schemas: tests/interop/test_k8s_manifests.py.)"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from tether.core.k8s import (Serving, object_name, render_deployment, render_inference_service, render_service,
                             to_yaml)
from tether.core.uri import RELEASE, parse_uri
from tether.errors import UsageError

REPO = "https://git.example.com/ml/fraud-detector.git"
PROD = Serving(REPO, "fraud-detector", "production", "fraud-detector@v1.1.0", "ml")


def _uri(doc: dict) -> str:
    return doc["spec"]["predictor"]["model"]["storageUri"]


def test_the_storage_uri_pins_the_release_never_the_branch():
    doc = render_inference_service(PROD)
    u = parse_uri(_uri(doc))
    assert (u.kind, u.name, u.git_url, u.layout) == (RELEASE, "fraud-detector@v1.1.0", REPO, "release")
    assert "production" not in _uri(doc)
    assert doc["metadata"]["name"] == "fraud-detector-production"
    assert doc["metadata"]["annotations"]["tether/release"] == "fraud-detector@v1.1.0"
    assert doc["spec"]["predictor"]["model"]["runtime"] == "tether"
    assert "canaryTrafficPercent" not in doc["spec"]["predictor"]


def test_it_follows_a_promotion_and_a_rollback():
    # the environment moves v1.0.0 -> v1.1.0 -> back to v1.0.0; each rendering pins what it runs,
    # and the object stays the same one (same name), so GitOps updates it in place
    seen = []
    for tag in ("fraud-detector@v1.0.0", "fraud-detector@v1.1.0", "fraud-detector@v1.0.0"):
        doc = render_inference_service(dataclasses.replace(PROD, release=tag))
        seen.append((doc["metadata"]["name"], parse_uri(_uri(doc)).name))
    assert seen == [("fraud-detector-production", "fraud-detector@v1.0.0"),
                    ("fraud-detector-production", "fraud-detector@v1.1.0"),
                    ("fraud-detector-production", "fraud-detector@v1.0.0")]


@pytest.mark.parametrize("weight", [0, 10, 25, 100])
def test_a_canary_is_the_stable_services_newest_revision_at_its_weight(weight):
    canary = Serving(REPO, "fraud-detector", "canary", "fraud-detector@v1.2.0", "ml", weight=weight, stable="production")
    doc = render_inference_service(canary)
    assert doc["metadata"]["name"] == "fraud-detector-production"  # the stable environment's object
    assert doc["spec"]["predictor"]["canaryTrafficPercent"] == weight
    assert parse_uri(_uri(doc)).name == "fraud-detector@v1.2.0"
    assert doc["metadata"]["annotations"]["tether/canary"] == "canary"
    assert doc["metadata"]["annotations"]["tether/environment"] == "production"


def test_a_built_in_runtime_gets_the_kserve_layout_and_no_runtime_name():
    doc = render_inference_service(dataclasses.replace(PROD, runtime="onnx"))
    model = doc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": "onnx"} and "runtime" not in model
    assert parse_uri(model["storageUri"]).layout == "kserve"


@pytest.mark.parametrize(
    "change,why",
    [
        ({"release": "other@v1.0.0"}, "not a release of fraud-detector"),
        ({"release": "fraud-detector@latest"}, "not a release of"),
        ({"release": "production"}, "not a release of"),
        ({"env": "Production"}, "not a valid environment"),
        ({"model": "-x", "release": "-x@v1.0.0"}, "not a valid model name"),
        ({"namespace": "ML"}, "namespace"),
        ({"namespace": "a" * 64}, "namespace"),
        ({"weight": 10}, "both its weight and the environment it guards"),
        ({"stable": "production"}, "both its weight"),
        ({"weight": 101, "stable": "production", "env": "canary"}, "0 to 100"),
        ({"weight": -1, "stable": "production", "env": "canary"}, "0 to 100"),
        ({"weight": True, "stable": "production", "env": "canary"}, "whole percentage"),
        ({"weight": 10.5, "stable": "production", "env": "canary"}, "whole percentage"),
        ({"weight": 10, "stable": "production"}, "canary of itself"),
        ({"weight": 10, "stable": "Prod", "env": "canary"}, "not a valid environment"),
        ({"runtime": "sklearnserver"}, "unknown runtime"),
        ({"service_account": "Bad_Name"}, "service account"),
        ({"repo": "git@github.com:ml/fraud.git"}, "scp-like"),
        ({"repo": "https://user:token@git.example.com/r.git"}, "user name"),
        ({"repo": "http://git.example.com/r.git"}, "not a git URL"),
        ({"name": "Fraud_Detector"}, "not a valid InferenceService name"),
        ({"name": "1fraud"}, "not a valid InferenceService name"),
        ({"model": "nlp/sentiment", "release": "nlp/sentiment@v1.0.0"}, "give the name explicitly"),
        ({"model": "Fraud", "release": "Fraud@v1.0.0"}, "give the name explicitly"),
    ],
)
def test_refuses(change, why):
    s = dataclasses.replace(PROD, **change)
    with pytest.raises(UsageError) as e:
        render_inference_service(s)
    assert why in e.value.message + (e.value.hint or "")


def test_a_model_name_that_is_no_label_can_be_named():
    s = Serving(REPO, "nlp/sentiment", "production", "nlp/sentiment@v1.0.0", "ml", name="sentiment-production")
    assert object_name(s) == "sentiment-production"
    assert parse_uri(_uri(render_inference_service(s))).model == "nlp/sentiment"


def test_the_plain_deployment_follows_the_branch():
    dep = render_deployment(PROD, "img:1", secret="dvc")
    pod = dep["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["tether", "deploy", "--env", "production", "--repo", REPO, "--target",
                               "/srv/tether/production", "--model", "fraud-detector"]
    serve, converge = pod["containers"]
    assert serve["command"][:4] == ["tether", "serve", "--target", "/srv/tether/production"]
    assert serve["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {"name": "TETHER_ENV", "value": "production"} in converge["env"]
    assert "fraud-detector@v1.1.0" not in str(pod)  # the pods follow the branch; the release is a note
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert render_service(PROD)["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    with pytest.raises(UsageError, match="canary"):
        render_deployment(Serving(REPO, "fraud-detector", "canary", "fraud-detector@v1.2.0", "ml", weight=10,
                                  stable="production"), "img:1")


def test_yaml_is_stable_and_round_trips():
    docs = (render_inference_service(PROD), render_deployment(PROD, "img:1"), render_service(PROD))
    text = to_yaml(*docs)
    assert text == to_yaml(*docs)
    assert list(yaml.safe_load_all(text)) == list(docs)
    assert "&id" not in text and "*id" not in text  # no anchors
    assert text.index("apiVersion") < text.index("kind") < text.index("metadata") < text.index("spec")


@pytest.mark.parametrize("kwargs", [{"image": ""}, {"image": "img 1"}, {"replicas": -1}, {"replicas": True},
                                    {"replicas": "2"}, {"secret": "Bad_Secret"}])
def test_the_deployment_refuses(kwargs):
    with pytest.raises(UsageError):
        render_deployment(PROD, **{"image": "img:1", **kwargs})
