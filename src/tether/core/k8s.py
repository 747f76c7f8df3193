"""An environment as Kubernetes manifests: KServe's `InferenceService`, or a plain `Deployment`
(and its `Service`) for teams without KServe. Plain dicts, and YAML by `to_yaml`. Pure; no I/O.

The environment branch stays the single truth; what is rendered follows from it:

* The InferenceService's `storageUri` pins the **release** the environment runs
  (`tether://...#model@vX.Y.Z`), never the branch: a pod that restarts, or a node that scales out,
  cannot pick up another release than the one the manifest names. A promotion or a rollback is a
  new rendering (a new storageUri), applied by GitOps (Argo CD, Flux) like any other change.
* A canary environment is no InferenceService of its own: KServe's canary is the newest revision
  of the *stable* environment's InferenceService. Rendering the canary gives the stable one's name,
  the canary's release in `storageUri` and the canary's recorded weight as `canaryTrafficPercent`
  (KServe sends the rest to the revision it last rolled out: the stable release).
* `runtime`: "tether" (the ClusterServingRuntime of examples/k8s/, `tether serve` over the whole
  release tree: storageUri layout `release`) or one of KServe's built-in model formats
  (`BUILTIN_FORMATS`: the artifact's files at /mnt/models, layout `kserve`).
* The plain Deployment follows the branch instead: an init container deploys the environment, a
  sidecar converges on it (`tether deploy` with jitter and back-off) and `tether serve` hot-swaps,
  so a promotion needs no new rendering; the release at rendering time is only an annotation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tether.core.moves import parse_weight
from tether.core.refs import check_env, check_model, parse_tag
from tether.core.uri import authority_of, release_uri
from tether.errors import UsageError

TETHER_RUNTIME = "tether"  # the ClusterServingRuntime and model format of examples/k8s/
# KServe's built-in model formats (the supportedModelFormats of config/runtimes/ in KServe v0.20.0)
BUILTIN_FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "tensorflow", "pytorch", "tensorrt", "triton",
                   "mlflow", "pmml", "paddle", "huggingface")
KSERVE_API = "serving.kserve.io/v1beta1"
ANNOTATION = "tether/"  # prefix of the annotations tether writes
MANAGED_BY = {"app.kubernetes.io/managed-by": "tether"}
SERVING_DIR = "/srv/tether"  # the plain Deployment's serving directory (an emptyDir)
PORT = 8080
UID = 10001  # the Containerfile's non-root user
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

# The converge sidecar of the plain Deployment, POSIX sh. It runs `tether deploy` every
# TETHER_CONVERGE_INTERVAL seconds plus a random jitter of up to as much again (replicas started
# together do not fetch together), doubles the wait after a failure up to
# TETHER_CONVERGE_MAX_DELAY, and returns to the interval after a success. A failed deploy leaves the
# serving release as it was (docs/deploy.md), so retrying is safe; `tether serve` hot-swaps after a
# successful one.
CONVERGE = """\
set -u
delay="$TETHER_CONVERGE_INTERVAL"
while :; do
  jitter=$(( $(od -An -N2 -tu2 /dev/urandom) % delay ))
  sleep $(( delay + jitter ))
  if tether deploy --env "$TETHER_ENV" --repo "$TETHER_REPO" --target "$TETHER_TARGET" --model "$TETHER_MODEL"; then
    delay="$TETHER_CONVERGE_INTERVAL"
  else
    rc=$?
    delay=$(( delay * 2 ))
    [ "$delay" -le "$TETHER_CONVERGE_MAX_DELAY" ] || delay="$TETHER_CONVERGE_MAX_DELAY"
    echo "converge: tether deploy exited $rc; next try in ${delay}s (+ jitter)" >&2
  fi
done
"""


@dataclass(frozen=True)
class Serving:
    """What to render for one environment. `repo`: the git URL the pods clone (an absolute path,
    `https://host/path` or `ssh://user@host/path`); `release`: the tag `env` runs now; `weight`:
    the canary's recorded weight (`tether.core.moves.weight_of`), None when `env` is no canary;
    `stable`: for a canary, the environment it guards (whose InferenceService it is);
    `runtime`: TETHER_RUNTIME or one of BUILTIN_FORMATS; `name`: the object name, by default
    `<model>-<env>` (`<model>-<stable>` for a canary); `service_account`: the pods' (KServe hands
    its S3 secret to the storage initializer)."""

    repo: str
    model: str
    env: str
    release: str
    namespace: str
    weight: int | None = None
    stable: str | None = None
    runtime: str = TETHER_RUNTIME
    name: str | None = None
    service_account: str | None = None


def _check(s: Serving) -> None:
    check_model(s.model)
    check_env(s.env)
    tag = parse_tag(s.release)
    if tag is None or tag.model != s.model:
        raise UsageError(f"{s.release!r} is not a release of {s.model} (MODEL@vX.Y.Z)",
                         hint="render the release the environment runs: `tether status --json` names it")
    if not _DNS1123.fullmatch(s.namespace):
        raise UsageError(f"{s.namespace!r} is not a Kubernetes namespace name (a DNS-1123 label)")
    if (s.weight is None) != (s.stable is None):
        raise UsageError(f"{s.env}: a canary needs both its weight and the environment it guards, not only one",
                         hint="pass the recorded weight and the stable environment (meta.tether.canaries)")
    if s.weight is not None:
        if isinstance(s.weight, bool) or not isinstance(s.weight, int):
            raise UsageError(f"the canary weight must be a whole percentage, not {s.weight!r}")
        parse_weight(s.weight, what=f"{s.env}'s canary weight")
        check_env(s.stable)  # type: ignore[arg-type]
        if s.stable == s.env:
            raise UsageError(f"{s.env} cannot be the canary of itself")
    if s.runtime != TETHER_RUNTIME and s.runtime not in BUILTIN_FORMATS:
        raise UsageError(f"unknown runtime {s.runtime!r}",
                         hint=f"use {TETHER_RUNTIME} (tether serve) or a KServe model format: {', '.join(BUILTIN_FORMATS)}")
    if s.service_account is not None and not _DNS1123.fullmatch(s.service_account):
        raise UsageError(f"{s.service_account!r} is not a service account name (a DNS-1123 label)")
    authority_of(s.repo)  # refuses what a tether:// URI cannot carry


def object_name(s: Serving) -> str:
    """The InferenceService's (or Deployment's) name: `name`, else `<model>-<stable or env>`; a
    DNS-1035 label (KServe's rule for InferenceService names), or UsageError."""
    name = s.name or f"{s.model}-{s.stable or s.env}"
    if not _DNS1035.fullmatch(name):
        raise UsageError(f"{name!r} is not a valid InferenceService name (lower-case letters, digits and '-', "
                         "starting with a letter, at most 63 characters)",
                         hint="give the name explicitly" if s.name is None else None)
    return name


def _metadata(s: Serving, name: str, release_note: str) -> dict:
    annotations = {f"{ANNOTATION}model": s.model, f"{ANNOTATION}environment": s.stable or s.env,
                   f"{ANNOTATION}release": s.release, f"{ANNOTATION}repository": s.repo}
    if s.stable is not None:
        annotations[f"{ANNOTATION}canary"] = s.env
    annotations[f"{ANNOTATION}rendered"] = release_note
    return {"name": name, "namespace": s.namespace, "labels": dict(MANAGED_BY), "annotations": annotations}


def render_inference_service(s: Serving) -> dict:
    """The KServe InferenceService (serving.kserve.io/v1beta1) serving `s.release`."""
    _check(s)
    if s.runtime == TETHER_RUNTIME:
        # the runtime speaks the Open Inference Protocol v2 only (examples/k8s/cluster-serving-runtime.yaml)
        model = {"modelFormat": {"name": TETHER_RUNTIME}, "runtime": TETHER_RUNTIME, "protocolVersion": "v2",
                 "storageUri": release_uri(s.repo, s.release)}
    else:
        model = {"modelFormat": {"name": s.runtime}, "storageUri": release_uri(s.repo, s.release, layout="kserve")}
    predictor: dict = {}
    if s.service_account is not None:
        predictor["serviceAccountName"] = s.service_account
    if s.weight is not None:
        predictor["canaryTrafficPercent"] = s.weight
    predictor["model"] = model
    note = (f"storageUri pins {s.release}, the release {s.env} runs"
            + (f"; {s.env} is the canary of {s.stable} at {s.weight}%" if s.stable else ""))
    return {"apiVersion": KSERVE_API, "kind": "InferenceService", "metadata": _metadata(s, object_name(s), note),
            "spec": {"predictor": predictor}}


def _security() -> dict:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _tether_env(s: Serving, target: str) -> list[dict]:
    return [{"name": "TETHER_ENV", "value": s.env}, {"name": "TETHER_REPO", "value": s.repo},
            {"name": "TETHER_TARGET", "value": target}, {"name": "TETHER_MODEL", "value": s.model}]


def _containers(s: Serving, image: str, target: str, secret: str | None) -> tuple[list, list]:
    """(init containers, containers) of the plain Deployment's pod."""
    mounts = [{"name": "serving", "mountPath": SERVING_DIR}]
    env_from = [{"secretRef": {"name": secret, "optional": True}}] if secret else []
    deploy = ["tether", "deploy", "--env", s.env, "--repo", s.repo, "--target", target, "--model", s.model]
    init = {"name": "deploy", "image": image, "command": deploy, "envFrom": env_from, "volumeMounts": mounts,
            "securityContext": _security()}
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    # tether serve has no /live: /metrics answers 200 whenever the server's loop does, even while
    # no release is ready (a dead worker restarts inside the server: no reason to kill the pod)
    alive = {"httpGet": {"path": "/metrics", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6}
    serve = {"name": "serve", "image": image,
             "command": ["tether", "serve", "--target", target, "--host", "0.0.0.0", "--port", str(PORT)],
             "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
             "readinessProbe": probe, "livenessProbe": alive, "volumeMounts": mounts,
             "securityContext": _security()}
    converge = {"name": "converge", "image": image, "command": ["/bin/sh", "-c", CONVERGE],
                "env": _tether_env(s, target) + [{"name": "TETHER_CONVERGE_INTERVAL", "value": "30"},
                                                 {"name": "TETHER_CONVERGE_MAX_DELAY", "value": "600"}],
                "envFrom": env_from, "volumeMounts": mounts, "securityContext": _security()}
    return [init], [serve, converge]


def render_deployment(s: Serving, image: str, replicas: int = 2, secret: str | None = None) -> dict:
    """The plain Deployment (apps/v1) that serves environment `s.env` and follows its branch.
    `secret`: a Secret whose keys become the deploy containers' environment (the DVC remote's
    credentials, e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)."""
    _check(s)
    if not image or any(c.isspace() for c in image):
        raise UsageError(f"{image!r} is not a container image reference")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise UsageError(f"replicas must be a whole number, not {replicas!r}")
    if secret is not None and not _DNS1123.fullmatch(secret):
        raise UsageError(f"{secret!r} is not a Secret name (a DNS-1123 label)")
    if s.stable is not None:
        raise UsageError(f"{s.env} is a canary: the plain Deployment serves one environment",
                         hint=f"render {s.stable}'s Deployment, and run the canary as `tether serve "
                              "--canary-target` (docs/serving.md)")
    name = object_name(s)
    target = f"{SERVING_DIR}/{s.env}"
    init, containers = _containers(s, image, target, secret)
    labels = {"app.kubernetes.io/name": name, **MANAGED_BY}
    pod: dict = {"automountServiceAccountToken": False,
                 "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                     "seccompProfile": {"type": "RuntimeDefault"}}}
    if s.service_account is not None:
        pod["serviceAccountName"] = s.service_account
    pod.update({"initContainers": init, "containers": containers, "volumes": [{"name": "serving", "emptyDir": {}}]})
    note = f"pods follow the branch {s.env}; it ran {s.release} when this was rendered"
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(s, name, note),
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}


def render_service(s: Serving) -> dict:
    """The Service (v1) in front of the plain Deployment's `tether serve`."""
    _check(s)
    name = object_name(s)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": s.namespace, "labels": dict(MANAGED_BY)},
            "spec": {"selector": {"app.kubernetes.io/name": name, **MANAGED_BY},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}


def to_yaml(*docs: dict) -> str:
    """`docs` as one YAML stream (safe_dump; keys in the order rendered, which is stable; a
    multi-line string, the converge script, as a literal block so it reads as the script it is)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: object) -> bool:  # no &id001 anchors: each manifest reads alone
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return "---\n".join(yaml.dump(d, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=200)
                        for d in docs)
