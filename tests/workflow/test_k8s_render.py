"""`tether k8s render`: an environment's KServe InferenceService, from the registry. It pins the
release the environment runs (never the branch), follows a promotion and a rollback, carries a
canary's recorded weight, and validates against KServe's vendored CRD (the helpers of
tests/interop/test_k8s_manifests.py)."""

from __future__ import annotations

import yaml

from interop.test_k8s_manifests import crd_errors, crds  # noqa: F401  (crds: the fixture)
from project import promote_to, threshold_release

CANARY = """        environments: [staging, canary, production]
        canaries: {canary: production}
"""


def render(p, env: str, *extra: str) -> dict:
    res = p.ok("k8s", "render", "--env", env, "--namespace", "ml", *extra)
    doc = yaml.safe_load(res.out)
    as_json = p.ok("k8s", "render", "--env", env, "--namespace", "ml", "--json", *extra).json()
    assert as_json["manifest"] == doc
    return doc


def pinned(p, tag: str) -> str:
    return f"tether://{p.origin}#{tag}"


def test_render_follows_promotion_rollback_and_the_canary_weight(project, crds):  # noqa: F811
    p = project
    promote_to(p, "fraud-detector@v1.0.0")
    doc = render(p, "production")
    assert crd_errors(doc, crds) == []
    predictor = doc["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == pinned(p, "fraud-detector@v1.0.0")
    assert "canaryTrafficPercent" not in predictor
    assert doc["metadata"]["name"] == "fraud-detector-production" and doc["metadata"]["namespace"] == "ml"

    v2 = threshold_release(p, 0.35)
    promote_to(p, v2)
    doc = render(p, "production")
    assert doc["spec"]["predictor"]["model"]["storageUri"] == pinned(p, v2) and crd_errors(doc, crds) == []

    p.ok("rollback", "--env", "production", "--approver", "ops", "--reason", "back")
    doc = render(p, "production")
    assert doc["spec"]["predictor"]["model"]["storageUri"] == pinned(p, "fraud-detector@v1.0.0")

    dvc = (p.root / "dvc.yaml").read_text()
    (p.root / "dvc.yaml").write_text(dvc.replace("        environments: [staging, production]\n", CANARY))
    p.commit_all("a canary in front of production")
    promote_to(p, v2, env="canary")
    doc = render(p, "canary")
    assert doc["spec"]["predictor"]["canaryTrafficPercent"] == 10  # a promotion into a canary starts at its first step
    p.ok("canary", "weight", "25", "--env", "canary", "--approver", "ops", "--reason", "first slice")
    doc = render(p, "canary")
    assert crd_errors(doc, crds) == []
    predictor = doc["spec"]["predictor"]
    assert doc["metadata"]["name"] == "fraud-detector-production"  # KServe's canary: the stable's newest revision
    assert predictor["model"]["storageUri"] == pinned(p, v2) and predictor["canaryTrafficPercent"] == 25

    onnx = render(p, "production", "--runtime", "onnx", "--repo-url", "https://git.example.com/ml/fd.git")
    assert crd_errors(onnx, crds) == []
    assert onnx["spec"]["predictor"]["model"]["storageUri"] == \
        "tether://git.example.com/ml/fd.git?layout=kserve#fraud-detector@v1.0.0"


def test_render_refuses_what_it_cannot_pin(project):
    res = project.tether("k8s", "render", "--env", "production")
    assert res.code == 3 and "no release to render" in res.err
    promote_to(project, "fraud-detector@v1.0.0")
    bad = project.tether("k8s", "render", "--env", "production", "--repo-url", "git@host:org/repo.git")
    assert bad.code == 2 and "scp-like" in bad.err


def test_render_refuses_a_move_origin_does_not_have(project):
    """Pods fetch from origin: rendering a move only this clone holds would pin a release that
    origin's environment branch does not name (deploy refuses the same)."""
    p = project
    p.ok("promote", "fraud-detector@v1.0.0", "--env", "production", "--approver", "ci", "--reason", "first",
         "--skip-staging", "test", "--push")
    v2 = threshold_release(p, 0.35)
    promote_to(p, v2)  # not pushed
    res = p.tether("k8s", "render", "--env", "production")
    assert res.code == 4 and "not pushed" in res.err and "nothing was rendered" in res.err, res.err
    assert "then render again" in res.err
    p.git("push", "-q", "origin", "production")
    assert render(p, "production")["spec"]["predictor"]["model"]["storageUri"] == pinned(p, v2)
