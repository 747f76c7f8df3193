"""examples/k8s/ and the manifests tether.core.k8s renders, validated offline (issue 29).

* Core kinds (Deployment, Service, ServiceAccount, Secret) with `kubernetes-validate --strict`
  (its bundled Kubernetes schemas, unknown fields refused), at a pinned Kubernetes version.
* KServe's kinds (InferenceService, ClusterServingRuntime, ClusterStorageContainer) with
  jsonschema against the openAPIV3Schema of KServe's own CRDs, vendored in examples/k8s/crds/ at
  v0.20.0 (NOTICE there). Unknown fields are refused the way the API server's strict field
  validation refuses them (`kubectl apply --validate=strict`): an object schema with properties
  and without x-kubernetes-preserve-unknown-fields admits no other field. The object's metadata
  is checked strictly against Kubernetes' ObjectMeta.
* Each kind of violation is shown to be caught, so none of this can pass vacuously.

Not checked here (no cluster): KServe's admission webhooks (e.g. canaryTrafficPercent's range,
which tether.core.k8s checks itself), list-map key uniqueness, and what a controller does with
a valid object.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tether.core.k8s import (BUILTIN_FORMATS, CONVERGE, Serving, render_deployment, render_inference_service,
                             render_service, to_yaml)
from tether.core.uri import RELEASE, parse_uri

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "examples" / "k8s"
CRDS = K8S / "crds"
KUBE = "1.32"  # the Kubernetes version the core kinds are validated against
BIN = Path(sys.executable).parent
KSERVE_KINDS = {"InferenceService", "ClusterServingRuntime", "ClusterStorageContainer"}
REPO = "https://git.example.com/ml/fraud-detector.git"
IMAGE = "registry.example.com/ml/tether:0.1.0"


def _strict(schema: dict) -> dict:
    """`schema` with additionalProperties: false wherever the API server prunes (and strict field
    validation refuses) unknown fields."""
    out = dict(schema)
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = _strict(schema[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            out[key] = [_strict(s) for s in schema[key]]
    return out


@pytest.fixture(scope="module")
def crds() -> dict:
    """kind -> (group/version, scope, strict validator) from the vendored CRDs."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
        schema = _strict(version["schema"]["openAPIV3Schema"])
        jsonschema.Draft7Validator.check_schema(schema)
        out[crd["spec"]["names"]["kind"]] = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["scope"],
                                             jsonschema.Draft7Validator(schema))
    assert set(out) == KSERVE_KINDS
    return out


def crd_errors(doc: dict, crds: dict) -> list[str]:
    """Every reason the API server (with strict field validation) would refuse `doc`."""
    api, scope, validator = crds[doc["kind"]]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    if doc.get("apiVersion") != api:
        errors.append(f"apiVersion {doc.get('apiVersion')!r} is not {api!r}")
    meta = doc.get("metadata", {})
    if (scope == "Cluster") == ("namespace" in meta):
        errors.append(f"a {scope}-scoped kind {'with' if 'namespace' in meta else 'without'} a namespace")
    try:  # ObjectMeta, strictly, as the API server checks it for every kind
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}, KUBE, strict=True)
    except kubernetes_validate.ValidationError as e:
        errors.append(f"metadata: {e}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", meta.get("name", "")):
        errors.append(f"metadata.name {meta.get('name')!r} is not a DNS-1123 subdomain")
    return errors


def core_errors(doc: dict) -> list[str]:
    try:
        kubernetes_validate.validate(doc, KUBE, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [str(e)]
    return []


def example_docs() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def servings() -> list[Serving]:
    base = Serving(REPO, "fraud-detector", "production", "fraud-detector@v1.1.0", "ml")
    return [base, Serving(REPO, "fraud-detector", "production", "fraud-detector@v1.1.0", "ml",
                          service_account="tether-models"),
            Serving(REPO, "fraud-detector", "canary", "fraud-detector@v1.2.0", "ml", weight=10, stable="production"),
            Serving(REPO, "fraud-detector", "canary", "fraud-detector@v1.2.0", "ml", weight=0, stable="production"),
            Serving("ssh://git@git.example.com:2222/ml/fraud.git", "fraud-detector", "staging",
                    "fraud-detector@v2.0.0-rc.1", "ml-staging"),
            Serving("/srv/git/fraud.git", "fraud-detector", "production", "fraud-detector@v1.0.0", "ml",
                    runtime="sklearn"),
            *(Serving(REPO, "textclf", "production", "textclf@v1.0.0", "ml", runtime=f) for f in BUILTIN_FORMATS)]


# --- core kinds -------------------------------------------------------------------------------

def test_core_kinds_pass_kubernetes_validate_strict_and_nothing_is_skipped_silently():
    files = sorted(str(p) for p in K8S.glob("*.yaml"))
    r = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", KUBE, *files],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    passed = re.findall(r"passed for resource (\w+)/", out)
    core = [d["kind"].lower() for _, d in example_docs() if d["kind"] not in KSERVE_KINDS]
    assert sorted(passed) == sorted(core) and {"deployment", "service", "serviceaccount", "secret"} <= set(core)
    # kubernetes-validate skips (exit 0) a kind it has no schema for: only KServe's may be skipped
    skipped = set(re.findall(r"Couldn't find schema for kind (\w+)", out))
    assert skipped == KSERVE_KINDS, out


@pytest.mark.parametrize("s", servings()[:2] + servings()[4:6], ids=lambda s: f"{s.env}-{s.runtime}")
def test_rendered_deployment_and_service_validate_strictly(s):
    for doc in (render_deployment(s, IMAGE, secret="tether-dvc-remote"), render_service(s)):
        assert core_errors(doc) == []
        assert core_errors(yaml.safe_load(to_yaml(doc))) == []


def test_kubernetes_validate_catches_violations(tmp_path):
    s = servings()[0]
    bad = render_deployment(s, IMAGE)
    bad["spec"]["replica"] = bad["spec"].pop("replicas")  # misspelled
    assert core_errors(bad)
    bad = render_deployment(s, IMAGE)
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"  # wrong type
    assert core_errors(bad)
    bad = render_deployment(s, IMAGE)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/ready"
    assert core_errors(bad)
    f = tmp_path / "bad.yaml"
    f.write_text(to_yaml(render_service(s)).replace("targetPort:", "targetPorts:"))
    r = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", KUBE, str(f)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "targetPorts" in r.stdout + r.stderr


# --- KServe's kinds against KServe's CRDs --------------------------------------------------

def test_the_vendored_crds_are_kserves_files_unmodified():
    notice = (CRDS / "NOTICE").read_text()
    rows = dict(re.findall(r"^(serving\.kserve\.io_\w+\.yaml)\s+\S+\s+([0-9a-f]{40})$", notice, re.M))
    assert set(rows) == {p.name for p in CRDS.glob("*.yaml")} and len(rows) == 3
    for name, blob in rows.items():
        r = subprocess.run(["git", "hash-object", str(CRDS / name)], capture_output=True, text=True, check=True)
        assert r.stdout.strip() == blob, name
    words = " ".join(notice.split())
    assert "release tag v0.20.0" in words and "Apache License, Version 2.0" in words


def test_kserve_examples_validate_against_the_crds(crds):
    docs = [(f, d) for f, d in example_docs() if d["kind"] in KSERVE_KINDS]
    assert {d["kind"] for _, d in docs} == KSERVE_KINDS
    for f, d in docs:
        assert crd_errors(d, crds) == [], f


@pytest.mark.parametrize("s", servings(), ids=lambda s: f"{s.env}-{s.runtime}-{s.weight}-{s.service_account}")
def test_rendered_inference_services_validate_against_the_crd(s, crds):
    doc = render_inference_service(s)
    assert crd_errors(doc, crds) == []
    assert crd_errors(yaml.safe_load(to_yaml(doc)), crds) == []


def _break(doc: dict, path: str, how) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    how(node, last)
    return doc


def _rename(to):
    return lambda node, key: node.__setitem__(to, node.pop(key))


def _set(value):
    return lambda node, key: node.__setitem__(key, value)


def _drop(node, key):
    del node[key]


VIOLATIONS = [
    ("isvc", "spec.predictor.model.storageUri", _rename("storageURI"), "storageURI"),  # misspelled
    ("isvc", "spec.predictor.model", _rename("modle"), "modle"),
    ("isvc", "spec.predictor.canaryTrafficPercent", _set("10"), "is not of type 'integer'"),  # wrong type
    ("isvc", "spec.predictor.model.modelFormat.name", _drop, "'name' is a required property"),
    ("isvc", "spec.predictor", _drop, "'predictor' is a required property"),
    ("isvc", "metadata.namespace", _drop, "without a namespace"),
    ("isvc", "metadata.name", _set("Fraud_Detector"), "DNS-1123"),
    ("isvc", "metadata.labels", _set({"a": 1}), "metadata"),
    ("isvc", "apiVersion", _set("serving.kserve.io/v1alpha1"), "apiVersion"),
    ("csc", "spec.supportedUriFormats", _drop, "'supportedUriFormats' is a required property"),
    ("csc", "spec.supportedUriFormats.0.prefix", _rename("prefx"), "prefx"),
    ("csc", "spec.container.command", _rename("comand"), "comand"),
    ("csc", "spec.container.resources.limits.memory", _set("2 GiB"), "does not match"),
    ("csc", "metadata", _set({"name": "tether", "namespace": "ml"}), "Cluster-scoped kind with a namespace"),
    ("csr", "spec.containers.0.readinessProbe.httpGet.port", _set([8080]), "is not valid under any of the given"),
    ("csr", "spec.containers.0.args", _set("--target /mnt/models"), "is not of type 'array'"),
    ("csr", "spec.supportedModelFormats.0.autoselect", _set(True), "autoselect"),
    ("csr", "spec.supportedModelFormats.0.priority", _set(0), "less than the minimum"),
]


@pytest.mark.parametrize("which,path,how,expect", VIOLATIONS, ids=[f"{v[0]}:{v[1]}:{v[3][:20]}" for v in VIOLATIONS])
def test_a_schema_violation_is_caught(which, path, how, expect, crds):
    kinds = {"isvc": "InferenceService", "csc": "ClusterStorageContainer", "csr": "ClusterServingRuntime"}
    (good,) = [d for _, d in example_docs() if d["kind"] == kinds[which]]
    assert crd_errors(good, crds) == []
    errors = crd_errors(_break(good, path, how), crds)
    assert any(expect in e for e in errors), errors


# --- the contract with KServe and with tether's own commands ---------------------------------

def _doc(kind: str) -> dict:
    (d,) = [d for _, d in example_docs() if d["kind"] == kind]
    return d


def test_the_storage_container_fits_kserves_contract():
    csc = _doc("ClusterStorageContainer")["spec"]
    c = csc["container"]
    # KServe appends `<storage-uri> <dest>` as args and merges this container over its own:
    # the command is tether's, and no args of ours may replace the two it appends
    assert c["name"] == "storage-initializer"
    assert c["command"] == ["tether", "kserve-init"] and "args" not in c
    assert csc["supportedUriFormats"] == [{"prefix": "tether://"}]
    assert csc.get("workloadType", "initContainer") == "initContainer"
    # the rendered storageUri is claimed by it (KServe's IsStorageUriSupported: a plain prefix)
    uri = _doc("InferenceService")["spec"]["predictor"]["model"]["storageUri"]
    assert uri.startswith(csc["supportedUriFormats"][0]["prefix"])
    assert parse_uri(uri).kind == RELEASE


def test_the_examples_are_what_tether_renders():
    s = Serving(REPO, "fraud-detector", "production", "fraud-detector@v1.1.0", "ml", service_account="tether-models")
    assert list(yaml.safe_load_all((K8S / "inference-service.yaml").read_text())) == [render_inference_service(s)]
    assert list(yaml.safe_load_all((K8S / "deployment.yaml").read_text())) == \
        [render_deployment(s, IMAGE, secret="tether-dvc-remote"), render_service(s)]
    # and every manifest names the same image, service account and namespace
    docs = [d for _, d in example_docs()]
    images = {c["image"] for d in docs for c in _containers(d)}
    assert images == {IMAGE}
    assert {d["metadata"].get("namespace") for d in docs} == {"ml", None}


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    if doc["kind"] == "Deployment":
        pod = spec["template"]["spec"]
        return pod["containers"] + pod.get("initContainers", [])
    if doc["kind"] == "ClusterStorageContainer":
        return [spec["container"]]
    return spec.get("containers", [])


def _options(command: str) -> set[str]:
    r = subprocess.run([str(BIN / "tether"), command, "--help"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"(--[a-z][a-z-]*)", r.stdout))


def test_every_tether_flag_in_the_manifests_is_real():
    used: dict[str, set[str]] = {}
    for _, d in example_docs():
        for c in _containers(d):
            argv = c.get("command", []) + c.get("args", [])
            if argv[:2] == ["/bin/sh", "-c"]:
                argv = [w for line in argv[2].splitlines() if "tether " in line
                        for w in shlex.split(line.split("tether ", 1)[1].split(";")[0])]
                argv = ["tether", *argv]
            if argv[:1] == ["tether"] and argv[1] != "kserve-init":  # kserve-init: issue 29, not yet here
                used.setdefault(argv[1], set()).update(a for a in argv[2:] if a.startswith("--"))
    assert set(used) == {"deploy", "serve"}
    for command, flags in used.items():
        assert flags <= _options(command), (command, flags - _options(command))


def test_probes_use_routes_tether_serve_has():
    app = (ROOT / "src" / "tether" / "serve" / "app.py").read_text()
    routes = set(re.findall(r'\bapp\.(?:get|post)\("([^"]+)"\)', app))  # @app.get(...) or app.get(...)(handler)
    for _, d in example_docs():
        for c in _containers(d):
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in c:
                    assert c[probe]["httpGet"]["path"] in routes, (c["name"], probe)
    assert {"/ready", "/metrics"} <= routes


# --- the converge sidecar, run as the pod runs it (with stand-ins for tether and sleep) --------

def test_the_converge_loop_backs_off_with_jitter_and_resets(tmp_path):
    (script,) = [c["command"][2] for _, d in example_docs() for c in _containers(d) if c["name"] == "converge"]
    assert script == CONVERGE
    stub = tmp_path / "bin"
    stub.mkdir()
    # tether: exit with the next code of $CODES; after the last one, end the loop's shell
    (stub / "tether").write_text(
        '#!/bin/sh\necho "$*" >> "$LOG.args"\nn=$(wc -l < "$LOG.args")\n'
        'code=$(echo "$CODES" | cut -d" " -f"$n")\n[ -n "$code" ] || kill -TERM "$PPID"\nexit "${code:-0}"\n')
    (stub / "sleep").write_text('#!/bin/sh\necho "$1" >> "$LOG.sleeps"\n')
    for f in ("tether", "sleep"):
        (stub / f).chmod(0o755)
    log = tmp_path / "log"
    env = {"PATH": f"{stub}:/usr/bin:/bin", "LOG": str(log), "CODES": "7 7 7 7 0 6 0",
           "TETHER_ENV": "production", "TETHER_REPO": REPO, "TETHER_TARGET": "/srv/tether/production",
           "TETHER_MODEL": "fraud-detector", "TETHER_CONVERGE_INTERVAL": "10", "TETHER_CONVERGE_MAX_DELAY": "50"}
    r = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0  # ended by the stand-in, never by itself
    sleeps = [int(x) for x in Path(f"{log}.sleeps").read_text().split()]
    calls = Path(f"{log}.args").read_text().splitlines()
    assert calls[0] == f"deploy --env production --repo {REPO} --target /srv/tether/production --model fraud-detector"
    # the base delay before each call: 10, then doubled per failure up to 50, back to 10 on success
    base = [10, 20, 40, 50, 50, 10, 20, 10]
    assert len(sleeps) == len(calls) == 8
    for slept, b in zip(sleeps, base):
        assert b <= slept < 2 * b  # jitter: up to the delay again
    assert "tether deploy exited 7; next try in 20s" in r.stderr
    assert "exited 6; next try in 20s" in r.stderr


# --- the Containerfile (no container runs on these machines: its text is what can be checked) ---

def test_the_containerfile_builds_from_the_lock_and_ends_without_compilers_as_non_root():
    text = (ROOT / "Containerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2 and stages[0].split()[:3] == ["${PYTHON_IMAGE}", "AS", "build"]
    build, final = stages
    assert "-c requirements.lock" in build and "COPY pyproject.toml requirements.lock" in build
    assert "COPY --from=build /opt/tether /opt/tether" in final
    for compiler in ("build-essential", "gcc", "g++", "clang", "make ", "-dev"):
        assert compiler not in final, compiler
    (user,) = re.findall(r"^USER (\S+)$", final, re.M)
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    # the manifests run as that user, and a pod's command finds `tether` on the image's PATH
    ids = {c["securityContext"].get("runAsUser") for _, d in example_docs() for c in _containers(d)} - {None}
    pods = {d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] for _, d in example_docs()
            if d["kind"] == "Deployment"}
    assert ids | pods == {int(uid)}
    assert "PATH=/opt/tether/bin:$PATH" in final and 'ENTRYPOINT ["tether"]' in final
