"""A release's provenance as an in-toto Statement v1 with an SLSA Provenance v1 predicate, built
from the release's manifest and the digests of its model artifact's files. Pure: no I/O, no keys.

The statement binds the artifact's files (the subjects: name and sha256) to what made them: the
source commit and tree, the data slice's DVC-tracked inputs, the code the model's stages run, the
params and the Hydra configuration (resolvedDependencies), the decision threshold, the metrics
and the eval predictions digest (internalParameters and byproducts), and the DVC pipeline that
ran (the builder, with the dvc.lock digest). docs/attestation.md says what each field means.

The envelope and the model-signing bundle around it are tether.core.dsse's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:tether:buildtype:dvc-repro:v1"
BUILDER_ID = "urn:tether:builder:dvc-pipeline"
# What model_signing leaves out of a directory by default (its `--ignore-git-paths`), at the
# artifact's top level only: git's own metadata, never part of a model.
GIT_META = (".git", ".gitattributes", ".github", ".gitignore")

_HEX = re.compile(r"[0-9a-f]{64}")
_GIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Subject:
    """One file of the model artifact: its path in the release tree and its sha256."""

    name: str
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {"sha256": self.sha256}}


@dataclass(frozen=True)
class ReleaseFacts:
    """What the statement says beyond the manifest: the tag, its object, and dvc.lock's digest."""

    tag: str
    tag_object: str
    dvc_lock_sha256: str | None


def canonical_json(value: Any) -> bytes:
    """One byte string per value (sorted keys, no spaces, UTF-8): what is signed and compared."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def is_git_meta(relpath: str) -> bool:
    """A path model_signing leaves out of a directory model by default (see GIT_META)."""
    first = relpath.split("/", 1)[0]
    return first in GIT_META


def artifact_files(artifact_path: str, relpaths: Iterable[str]) -> list[str]:
    """The release-tree paths a directory artifact's files have, model_signing's git metadata
    left out, in byte order (the order model_signing signs them in)."""
    names = [f"{artifact_path}/{r}" for r in relpaths if not is_git_meta(r)]
    return sorted(names, key=lambda n: n.encode())


def subjects(digests: Mapping[str, str]) -> list[Subject]:
    """{release-tree path: sha256} as subjects in byte order; every digest lowercase hex."""
    out = []
    for name in sorted(digests, key=lambda n: n.encode()):
        if not isinstance(name, str) or not name or not _HEX.fullmatch(str(digests[name])):
            raise ValueError(f"not a file digest: {name!r}")
        out.append(Subject(name, digests[name]))
    return out


def _data_dependency(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    md5 = entry.get("md5")
    sha = entry.get("sha256")
    digest: dict[str, str] = {}
    if isinstance(md5, str):
        plain = md5.removesuffix(".dir")
        if _MD5.fullmatch(plain):
            digest["md5"] = plain
    directory = isinstance(md5, str) and md5.endswith(".dir")
    if isinstance(sha, str) and _HEX.fullmatch(sha):
        digest["dirHash" if directory else "sha256"] = sha
    git_id = entry.get("git_id")
    if isinstance(git_id, str) and _GIT_ID.fullmatch(git_id):
        digest["gitBlob"] = git_id
    if not digest:
        return None
    dvc = {"md5": md5, "directory": directory, "external": bool(entry.get("external")),
           "stage": entry.get("stage")}
    return {"name": entry["path"], "digest": digest, "annotations": {"dvc": dvc}}


def _code_dependency(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    git_id = entry.get("git_id")
    kind = {"blob": "gitBlob", "tree": "gitTree"}.get(str(entry.get("type")))
    if kind is None or not isinstance(git_id, str) or not _GIT_ID.fullmatch(git_id):
        return None
    return {"name": entry["path"], "digest": {kind: git_id}}


def resolved_dependencies(manifest: Mapping[str, Any], facts: ReleaseFacts) -> list[dict[str, Any]]:
    """The source at the release commit, then the data slice, the params and the Hydra
    configuration, then the code the model's stages run."""
    comps = manifest["components"]
    deps: list[dict[str, Any]] = [{
        "name": "source",
        "digest": {"gitCommit": manifest["commit"], "gitTree": manifest["tree"]},
        "annotations": {"release": {"tag": facts.tag, "tagObject": facts.tag_object}},
    }]
    deps += [d for e in comps.get("data") or [] if (d := _data_dependency(e)) is not None]
    params = comps.get("params") or {}
    if isinstance(params.get("sha256"), str) and _HEX.fullmatch(params["sha256"]):
        deps.append({"name": params.get("path") or "params.yaml", "digest": {"sha256": params["sha256"]},
                     "annotations": {"params": {"used": params.get("used") or {}}}})
    config = params.get("config") or {}
    if isinstance(config.get("tree"), str) and _GIT_ID.fullmatch(config["tree"]):
        deps.append({"name": config.get("dir") or "conf", "digest": {"gitTree": config["tree"]},
                     "annotations": {"hydra": {"role": "configuration"}}})
    deps += [d for e in comps.get("code") or [] if (d := _code_dependency(e)) is not None]
    return deps


def _byproducts(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    metrics = manifest.get("metrics") or {}
    out: list[dict[str, Any]] = [{
        "name": "metrics", "digest": {"sha256": hashlib.sha256(canonical_json(metrics)).hexdigest()},
        "mediaType": "application/json", "annotations": {"metrics": metrics},
    }]
    pred = manifest.get("predictions_sha256")
    if isinstance(pred, str) and _HEX.fullmatch(pred):
        out.append({"name": "eval-predictions", "digest": {"sha256": pred}})
    return out


def build_statement(subject_list: Sequence[Subject], manifest: Mapping[str, Any],
                    facts: ReleaseFacts) -> dict[str, Any]:
    """The statement for one release. Deterministic: the same release gives the same bytes from
    any clone (no time, no host, no remote URL in it)."""
    if not subject_list:
        raise ValueError("a statement needs at least one subject (the model artifact has no files)")
    threshold = manifest["components"].get("threshold") or {}
    builder: dict[str, Any] = {"id": BUILDER_ID}
    if facts.dvc_lock_sha256:
        builder["version"] = {"dvc.lock": facts.dvc_lock_sha256}
        builder["builderDependencies"] = [{"name": "dvc.lock", "digest": {"sha256": facts.dvc_lock_sha256}}]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [s.as_dict() for s in subject_list],
        "predicateType": PROVENANCE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "release": facts.tag,
                    "model": manifest["model"],
                    "artifact": dict(manifest.get("artifact") or {}),
                    "stages": sorted(manifest.get("stages") or {}),
                },
                "internalParameters": {
                    "threshold": {"value": threshold.get("value"), "source": threshold.get("source")},
                    "metrics": manifest.get("metrics") or {},
                    "predictionsSha256": manifest.get("predictions_sha256"),
                    "stageCommands": dict(manifest.get("stages") or {}),
                },
                "resolvedDependencies": resolved_dependencies(manifest, facts),
            },
            "runDetails": {
                "builder": builder,
                "metadata": {"invocationId": f"{facts.tag}@{manifest['commit']}"},
                "byproducts": _byproducts(manifest),
            },
        },
    }


def statement_subjects(statement: Mapping[str, Any]) -> dict[str, str]:
    """{name: sha256} of a statement read from storage (untrusted): ValueError when malformed."""
    subs = statement.get("subject")
    if not isinstance(subs, list) or not subs:
        raise ValueError("the statement names no subject")
    out: dict[str, str] = {}
    for s in subs:
        name = s.get("name") if isinstance(s, dict) else None
        sha = (s.get("digest") or {}).get("sha256") if isinstance(s, dict) else None
        if not isinstance(name, str) or not isinstance(sha, str) or not _HEX.fullmatch(sha) or name in out:
            raise ValueError(f"malformed subject {str(s)[:80]}")
        out[name] = sha
    return out


def compare_subjects(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """What differs between the statement's subjects and the files found: one line each."""
    problems = [f"{n}: not in the attested artifact (an added file)" for n in sorted(set(actual) - set(expected))]
    problems += [f"{n}: missing" for n in sorted(set(expected) - set(actual))]
    problems += [f"{n}: sha256 {actual[n][:16]}…, attested {expected[n][:16]}…"
                 for n in sorted(set(expected) & set(actual)) if expected[n] != actual[n]]
    return problems


# -- the attestation policy: `meta.tether.attestation` in dvc.yaml ---------------------------
@dataclass(frozen=True)
class AttestPolicy:
    """Which environments take only attested releases, and the committed public key that must
    have signed them (a path in the repository)."""

    key: str = ""
    environments: tuple[str, ...] = ()

    def required(self, env: str) -> bool:
        return env in self.environments


def parse_policy(raw: Mapping[str, Any] | None, environments: Sequence[str]) -> AttestPolicy:
    """`{key: keys/attest.pub, environments: [production]}`; ValueError names what is wrong. (Not
    under .tether/: a release directory keeps its stamp there.)"""
    raw = raw or {}
    unknown = sorted(set(raw) - {"key", "environments"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: key, environments)")
    key = raw.get("key", "")
    envs = raw.get("environments", [])
    if not raw:
        return AttestPolicy()
    if not isinstance(key, str) or not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError("key must be the public key's path inside the repository, e.g. keys/attest.pub")
    if not isinstance(envs, list) or not all(isinstance(e, str) and e in environments for e in envs):
        raise ValueError(f"environments must be a list of this model's environments ({', '.join(environments)})")
    return AttestPolicy(key, tuple(envs))
