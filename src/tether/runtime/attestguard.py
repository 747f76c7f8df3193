"""A server that requires attestations (`tether serve --require-attestation PUB`, passed to its
workers as TETHER_REQUIRE_ATTESTATION): before a worker imports a release, the attestation deploy
kept beside its stamp (`.tether/attestation.json`, written by `deploy --require-attestation`) must
verify with the host's key, describe the release's commit and tree, and name exactly the files
servedir.verify has just hashed (their sha256 as verified, reused)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tether.errors import IntegrityError

ENV = "TETHER_REQUIRE_ATTESTATION"


def require(release_dir: Path, manifest: dict, entries: list[dict]) -> None:
    """Nothing when the host requires no attestation; IntegrityError (the worker refuses to load)
    when the release's attestation is missing, signed by another key, or names other bytes."""
    pub = os.environ.get(ENV)
    if not pub:
        return
    from tether.adapters.attestkeys import load_public
    from tether.registry.attested import ATTESTATION, deployed_problems, verify_documents

    key = load_public(Path(pub), "--require-attestation")
    tag = f"{manifest.get('model')}@v{manifest.get('version')}"
    hint = f"deploy it with: tether deploy … --require-attestation PUB (it must be attested: tether attest {tag})"
    try:
        doc = json.loads((release_dir / ATTESTATION).read_text())
    except (OSError, ValueError):
        raise IntegrityError(f"{release_dir.name} carries no attestation, and this server requires one; "
                             "nothing was loaded from it", hint=hint) from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"{release_dir.name}: {ATTESTATION} is malformed; nothing was loaded from it", hint=hint)
    verified = verify_documents(tag, doc.get("provenance"), doc.get("model_sig"), key, manifest["commit"],
                                manifest["tree"])
    problems = deployed_problems(release_dir, manifest["artifact"]["path"], entries, verified.subjects)
    if problems:
        raise IntegrityError(f"{release_dir.name}: the model is not the attested one: " + "; ".join(problems[:5]) +
                             "; nothing was loaded from it", hint=hint)
