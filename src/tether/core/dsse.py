"""DSSE envelopes (secure-systems-lab/dsse v1.0.0) and the OpenSSF model-signing bundle. Pure:
the signature bytes come from the caller (tether.adapters.attestkeys signs and verifies).

- `pae` is DSSE's pre-authentication encoding, what a signature is made over.
- `envelope` is the DSSE JSON envelope tether stores as a release's provenance.
- `model_signing_statement` is the in-toto statement model_signing (sigstore/model-transparency,
  v1.x) signs for a model path: one resource per file with its sha256, the subject a sha256 over
  the resource digests in path order; `bundle` wraps it as the Sigstore bundle v0.3 its `verify
  key` reads (the public key named by the SHA-256 of its PEM, no transparency log).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tether.core.attestation import GIT_META, STATEMENT_TYPE, Subject

PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MODEL_SIGNING_PREDICATE = "https://model_signing/signature/v1.0"
MAX_DOCUMENT = 8 * 1024 * 1024  # an envelope or bundle read from storage is refused above this


class EnvelopeError(ValueError):
    """An envelope or bundle that is not what tether writes (read from storage: untrusted)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 SP LEN(type) SP type SP LEN(body) SP body (lengths in ASCII decimal, in bytes)."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def envelope(payload: bytes, signature: bytes, keyid: str) -> dict[str, Any]:
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode()}]}


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{what} is not valid base64") from None


def open_envelope(env: Any) -> tuple[bytes, bytes, str]:
    """(payload, signature, keyid) of a one-signature DSSE envelope; EnvelopeError otherwise."""
    if not isinstance(env, dict) or env.get("payloadType") != PAYLOAD_TYPE:
        raise EnvelopeError(f"not a DSSE envelope of {PAYLOAD_TYPE}")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
        raise EnvelopeError("the envelope must carry exactly one signature")
    keyid = sigs[0].get("keyid", "")
    return _b64(env.get("payload"), "the payload"), _b64(sigs[0].get("sig"), "the signature"), str(keyid)


def payload_statement(payload: bytes) -> dict[str, Any]:
    """The in-toto statement an envelope's payload holds."""
    if len(payload) > MAX_DOCUMENT:
        raise EnvelopeError("the payload is too large")
    try:
        stmt = json.loads(payload)
    except (ValueError, RecursionError):
        raise EnvelopeError("the payload is not JSON") from None
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        raise EnvelopeError(f"the payload is not an in-toto {STATEMENT_TYPE} statement")
    return stmt


def model_signing_statement(model_name: str, files: Mapping[str, str]) -> dict[str, Any]:
    """What model_signing signs for MODEL_PATH: `files` maps each path relative to MODEL_PATH
    ("." for a model that is one file) to its sha256."""
    resources = [{"name": n, "algorithm": "sha256", "digest": files[n]} for n in sorted(files)]
    root = hashlib.sha256(b"".join(bytes.fromhex(files[n]) for n in sorted(files))).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root}}],
        "predicateType": MODEL_SIGNING_PREDICATE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False,
                              "ignore_paths": sorted(GIT_META)},
            "resources": resources,
        },
    }


def model_files(artifact_path: str, subject_list: list[Subject]) -> dict[str, str]:
    """The statement's subjects as model_signing names them: relative to the artifact path."""
    out = {}
    for s in subject_list:
        if s.name == artifact_path:
            out["."] = s.sha256
        elif s.name.startswith(artifact_path + "/"):
            out[s.name[len(artifact_path) + 1:]] = s.sha256
    return out


def bundle(envelope_doc: Mapping[str, Any], public_key_hint: str) -> dict[str, Any]:
    """The Sigstore bundle model_signing's `verify key` reads: the DSSE envelope, and the public
    key named by the SHA-256 of its PEM (keyid left empty, as model_signing writes it)."""
    env = dict(envelope_doc)
    env["signatures"] = [{"sig": s["sig"], "keyid": ""} for s in env["signatures"]]
    return {"mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {"publicKey": {"hint": public_key_hint}, "tlogEntries": []},
            "dsseEnvelope": env}


def open_bundle(doc: Any) -> tuple[dict[str, Any], str]:
    """(the DSSE envelope, the public key hint) of a model-signing bundle; EnvelopeError otherwise."""
    if not isinstance(doc, dict) or doc.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise EnvelopeError(f"not a Sigstore bundle of {BUNDLE_MEDIA_TYPE}")
    hint = ((doc.get("verificationMaterial") or {}).get("publicKey") or {}).get("hint")
    env = doc.get("dsseEnvelope")
    if not isinstance(hint, str) or not isinstance(env, dict):
        raise EnvelopeError("the bundle names no public key or holds no DSSE envelope")
    return env, hint
