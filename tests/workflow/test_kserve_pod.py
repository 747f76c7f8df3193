"""An InferenceService's pod as processes, exactly as KServe runs it (issue 29 item 7: containers
cannot run on these machines, so the image's two entrypoints run as the pod would run them).
The init container is examples/k8s/cluster-storage-container.yaml's command with KServe's two
appended arguments; the serving container is examples/k8s/cluster-serving-runtime.yaml's command
and args, with only the mount point (/mnt/models) and the port (8080) replaced by this test's.
Its readiness probe's path must answer 200 once the release is served, and the release it serves
must be the one the storage initializer resolved."""

from __future__ import annotations

import os
import subprocess

import yaml
from servehelp import call, until
from test_kserve_init import kserve, resolved, shipped, uri_of  # noqa: F401 - shipped is a fixture

from project import BIN, REPO_ROOT
from s3server import free_port
from test_serve import RECORD

RUNTIME = REPO_ROOT / "examples/k8s/cluster-serving-runtime.yaml"


def runtime_container() -> dict:
    doc = yaml.safe_load(RUNTIME.read_text())
    assert doc["kind"] == "ClusterServingRuntime"
    assert doc["spec"]["protocolVersions"] == ["v2"]  # what tether serve speaks besides its own API
    (container,) = doc["spec"]["containers"]
    return container


ISVC = "fraud-detector-production"  # what KServe writes for {{.Name}}: the InferenceService's name


def pod_command(dest, port: int) -> list[str]:
    c = runtime_container()
    swap = {"/mnt/models": str(dest), "8080": str(port), "{{.Name}}": ISVC}
    args = [swap.get(a, a) for a in c.get("args", [])]
    assert str(dest) in args and str(port) in args, args  # the manifest serves the mount on the probed port
    return [*c["command"], *args]


def test_the_pod_serves_what_its_storage_initializer_resolved(shipped, tmp_path):
    p, tag, _s3 = shipped
    dest = tmp_path / "mnt" / "models"
    dest.mkdir(parents=True)
    init = kserve(p, uri_of(p, "production"), dest, tmp_path / "pod")
    assert init.code == 0, init.err
    port = free_port()
    c = runtime_container()
    probe = c["readinessProbe"]["httpGet"]
    assert probe["port"] == 8080
    log = tmp_path / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(pod_command(dest, port), cwd=tmp_path / "pod", env=p.env(), stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: proc.poll() is None and call(url, probe["path"], timeout=2)[0] == 200, "the readiness probe", 120)
        code, ready, _ = call(url, probe["path"])
        assert code == 200 and ready["release"] == tag == resolved(dest)["release"], ready
        code, out, _ = call(url, "/predict", {"records": [RECORD, RECORD]})
        assert code == 200 and len(out["predictions"]) == 2, out
        assert call(url, c["livenessProbe"]["httpGet"]["path"])[0] == 200
        # KServe's ingress routes the v2 protocol by the InferenceService's name (the runtime's
        # `protocolVersions: [v2]`); the release's own model name answers too
        inputs = [{"name": k, "shape": [2], "datatype": "FP64" if isinstance(v, float) else "INT64", "data": [v, v]}
                  for k, v in RECORD.items()]
        for name in (ISVC, "fraud-detector"):
            code, v2, _ = call(url, f"/v2/models/{name}/infer", {"inputs": inputs})
            assert code == 200 and v2["model_name"] == name, v2
            scores = next(o["data"] for o in v2["outputs"] if o["name"] == "score")
            assert scores == [row["score"] for row in out["predictions"]], (scores, out)
        assert call(url, "/v2/models/another-isvc/infer", {"inputs": inputs})[0] == 404
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, -15), log.read_text()[-2000:]


def test_the_pod_refuses_to_start_without_its_models(tmp_path):
    """--target-wait 0: a pod whose init container did not fill /mnt/models exits at once with the
    reason (exit 3), instead of answering probes with nothing to serve."""
    port = free_port()
    missing = tmp_path / "mnt" / "models"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(pod_command(missing, port), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])
    assert str(missing) in proc.stderr
