"""`tether deploy --require-attestation PUB`: the release must carry an attestation signed by the
host's own public key (tether.registry.attested), and the bytes deploy placed must be the ones it
names. Both are checked before `current` is switched, so a refusal switches nothing (exit 6).

The signature is checked before any byte is fetched; the files after the build, reusing the
sha256 deploy verified for each DVC output as it placed it (tether.registry.attested.
deployed_problems): only the small files git placed are hashed again."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tether.adapters.attestkeys import PublicKey, load_public
from tether.adapters.attestnotes import fetch_notes
from tether.adapters.workspace import Workspace
from tether.errors import IntegrityError, TetherError, UsageError
from tether.registry.attested import ATTESTATION, Verified, deployed_problems, verify_record
from tether.registry.release import Release
from tether.servedir.verify import read_release


def host_key(path: str | Path | None, cwd: str | Path) -> PublicKey | None:
    """The host's own public key (never one that arrives with what it deploys)."""
    if path is None:
        return None
    full = (Path(cwd) / path).absolute()
    if not full.is_file():
        raise UsageError(f"--require-attestation {path}: no such file")
    return load_public(full, "--require-attestation")


def require(ws: Workspace, rel: Release, key: PublicKey, fetch: bool = True) -> Verified:
    """The release's attestation by `key`, origin's notes fetched first (unless not `fetch`: a
    dry run in the user's own repository changes no ref); IntegrityError if none."""
    with contextlib.suppress(TetherError):  # origin unreachable or diverged: the local notes decide
        if fetch:
            fetch_notes(ws.git)
    try:
        return verify_record(ws.git, rel.tag, rel.tag_object, rel.commit, rel.tree, key)
    except IntegrityError as exc:
        exc.message = f"{exc.message}; nothing was deployed or switched"
        raise


def check_built(release_dir: Path, verified: Verified) -> None:
    """The materialised release's artifact against the attested subjects, before the switch."""
    manifest, entries, _bundle = read_release(release_dir)
    problems = deployed_problems(release_dir, manifest["artifact"]["path"], entries, verified.subjects)
    if problems:
        raise IntegrityError(f"{verified.tag}: the deployed model is not the attested one: " + "; ".join(problems[:5]),
                             hint="nothing was switched; the release's bytes differ from what its attestation "
                                  "names (see tether attest REF --verify)")
    # kept beside the stamp, for a server that requires attestations (runtime/attestguard.py)
    keep_documents(release_dir, verified)


def keep_documents(release_dir: Path, verified: Verified) -> None:
    import json
    import os

    path = release_dir / ATTESTATION
    tmp = path.with_name(f".attestation.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"release": verified.tag, "key": verified.key, "provenance": verified.envelope,
                               "model_sig": verified.bundle}, indent=1))
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)
