"""`tether attest REF --key KEY [--push]` and `tether attest REF --verify --public-key PUB [--out DIR]`.

Attesting a release: its model artifact is materialised into a temporary directory exactly as
deploy places it (git tree plus DVC outputs, every byte verified on the way in) and each of its
files hashed; the in-toto statement with the SLSA provenance predicate (tether.core.attestation)
is signed as a DSSE envelope, and the model-signing statement over the same files as the bundle
`model_signing verify key` reads (tether.core.dsse); both go into the git note on the release's
commit (tether.adapters.attestnotes). A release attested once stays so: the same statement signed
again by the same key is "already attested", anything else is refused (exit 4).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tether.adapters import attestnotes as notes
from tether.adapters import materialise
from tether.adapters.attestkeys import PrivateKey, load_private, load_public
from tether.adapters.dvcstore import DvcStore
from tether.adapters.workspace import Workspace
from tether.core import attestation as at
from tether.core import dsse
from tether.core.refs import parse_ref
from tether.digest import sha256_bytes
from tether.errors import Conflict, GateFailed, IntegrityError, TetherError
from tether.registry.attested import Verified, artifact_digests, dumps, verify_record
from tether.registry.registry import Registry
from tether.registry.release import Release


@dataclass
class AttestResult:
    release: str
    commit: str
    key: str  # SHA-256 of the public key's PEM
    subjects: list[str]
    outcome: str  # attested | already-attested | verified
    pushed: bool = False
    exported: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _release(ws: Workspace, ref_text: str, model: str | None) -> tuple[Release, dict]:
    reg = Registry(ws, messages=False)
    rel = reg.resolve(parse_ref(ref_text), model)
    if rel.unresolved:  # a fresh clone's empty cache: the threshold and metrics objects first
        rel = reg.resolve_objects([rel], DvcStore(ws.root))[0]
    manifest = rel.require_trusted("attested")
    if rel.problem_kind == "incomplete":
        raise GateFailed(f"{rel.tag} is incomplete ({rel.problem}): an attestation would vouch for a partial tuple",
                         hint="release a complete tuple and attest that")
    return rel, manifest


def statement_for(ws: Workspace, rel: Release, manifest: dict, progress=None) -> dict:
    """The release's statement, from its artifact's files as deploy would place them."""
    store = DvcStore(ws.root)
    weights = {e["path"] for e in manifest["components"]["weights"]}
    entries = [e for e in materialise.needed(manifest) if e["path"] in weights]
    materialise.ensure_cached(store, entries, progress)
    with tempfile.TemporaryDirectory(prefix="tether-attest-") as tmp:
        dest = Path(tmp) / "release"
        if progress:
            progress(f"materialising {rel.tag}'s artifact to hash its files …")
        materialise.materialise(ws.git, store, manifest, dest, entries)
        digests = artifact_digests(dest, manifest["artifact"]["path"])
    lock = ws.git.show_or_none(rel.commit, "dvc.lock")
    facts = at.ReleaseFacts(rel.tag, rel.tag_object, sha256_bytes(lock.encode()) if lock is not None else None)
    return at.build_statement(at.subjects(digests), manifest, facts)


def _sign(key: PrivateKey, statement: dict, artifact_path: str, tag_object: str) -> dict:
    payload = at.canonical_json(statement)
    envelope = dsse.envelope(payload, key.sign(dsse.pae(dsse.PAYLOAD_TYPE, payload)), key.public.hint)
    subs = at.subjects(at.statement_subjects(statement))
    ms_payload = at.canonical_json(dsse.model_signing_statement(Path(artifact_path).name,
                                                                dsse.model_files(artifact_path, subs)))
    ms_env = dsse.envelope(ms_payload, key.sign(dsse.pae(dsse.PAYLOAD_TYPE, ms_payload)), "")
    return {"tag_object": tag_object, "key": key.public.hint, "provenance": envelope,
            "model_sig": dsse.bundle(ms_env, key.public.hint)}


def attest(ws: Workspace, ref_text: str, key_path: Path, *, model: str | None = None, push: bool = False,
           progress=None) -> AttestResult:
    key = load_private(key_path, os.environ.get("TETHER_ATTEST_KEY_PASSWORD"))
    rel, manifest = _release(ws, ref_text, model)
    if push:
        notes.fetch_notes(ws.git)  # origin's attestations count: a release attested there is attested
    statement = statement_for(ws, rel, manifest, progress)
    names = sorted(at.statement_subjects(statement))
    result = AttestResult(rel.tag, rel.commit, key.public.hint, names, "attested")
    if notes.record_of(ws.git, rel.commit, rel.tag) is not None:
        _same_or_refuse(ws, rel, key, statement)
        result.outcome = "already-attested"
    else:
        record = _sign(key, statement, manifest["artifact"]["path"], rel.tag_object)
        notes.add_record(ws.git, rel.commit, rel.tag, record)
    if push:
        notes.push_notes(ws.git)
        result.pushed = True
    return result


def _same_or_refuse(ws: Workspace, rel: Release, key: PrivateKey, statement: dict) -> None:
    """An existing attestation is kept as it is: re-attesting is a no-op when it is this key's
    signature over this very statement, refused otherwise."""
    try:
        found = verify_record(ws.git, rel.tag, rel.tag_object, rel.commit, rel.tree, key.public)
    except TetherError:
        found = None
    if found is None or at.canonical_json(found.statement) != at.canonical_json(statement):
        raise Conflict(f"{rel.tag} already has an attestation, and a different one; it is never changed or replaced",
                       hint=f"see it with: tether attest {rel.tag} --verify --public-key PUB "
                            f"(git notes --ref={notes.NOTES_REF} show {rel.commit[:12]})")


def pinned(ws: Workspace, rel: Release, manifest: dict) -> dict[str, str] | None:
    """{release-tree path: sha256} of the artifact's files from what the release pins, without
    fetching a byte: each DVC file output's sha256 (verified against its bytes by every deploy)
    and the sha256 of each git blob under the artifact path. None when a part is not pinned file
    by file (a directory output, a manifest without sha256): then the files are rehashed."""
    from tether.adapters.gitrepo import cat_files
    from tether.digest import sha256_bytes

    art = manifest["artifact"]["path"]
    under = [e for e in manifest["components"]["weights"] if e["path"] == art or e["path"].startswith(art + "/")]
    if any(not e.get("git_id") and (not e.get("sha256") or str(e.get("md5") or "").endswith(".dir")) for e in under):
        return None
    out = {e["path"]: e["sha256"] for e in under if not e.get("git_id")}
    blobs = [p for p, (kind, _oid) in ws.git.ls_tree(rel.commit, [art]).items() if kind == "blob" and p not in out]
    for path, data in cat_files(ws.git, [f"{rel.commit}:{p}" for p in blobs]).items():
        name = path.split(":", 1)[1]
        if data is None:
            return None
        out[name] = sha256_bytes(data)
    if not out:
        return None
    if art in out:  # the artifact is one file
        return {art: out[art]}
    return {n: out[n] for n in at.artifact_files(art, [n[len(art) + 1:] for n in out])}


def verify(ws: Workspace, ref_text: str, public_key: Path, *, model: str | None = None,
           out: Path | None = None, rehash: bool = False, progress=None) -> AttestResult:
    """Both signatures with the key, the statement against the release: its commit and tree, and
    its artifact's files as the release pins them (offline, no byte fetched), or with `rehash`
    (and whenever the release does not pin each file) rehashed from a fresh materialisation.
    Then the export."""
    key = load_public(public_key)
    rel, manifest = _release(ws, ref_text, model)
    if notes.record_of(ws.git, rel.commit, rel.tag) is None:
        notes.fetch_notes(ws.git)  # a fresh clone: origin's attestations
    found = verify_record(ws.git, rel.tag, rel.tag_object, rel.commit, rel.tree, key)
    digests = None if rehash else pinned(ws, rel, manifest)
    if digests is not None:
        lock = ws.git.show_or_none(rel.commit, "dvc.lock")
        facts = at.ReleaseFacts(rel.tag, rel.tag_object, sha256_bytes(lock.encode()) if lock is not None else None)
        fresh = at.build_statement(at.subjects(digests), manifest, facts)
    else:
        fresh = statement_for(ws, rel, manifest, progress)
    if at.canonical_json(fresh) != at.canonical_json(found.statement):
        problems = at.compare_subjects(found.subjects, at.statement_subjects(fresh)) or [
            "the provenance says something else about the release than its commit does"]
        raise IntegrityError(f"{rel.tag}: the attestation does not match the release: " + "; ".join(problems[:5]),
                             hint="releases never change: find out who wrote the attestation")
    result = AttestResult(rel.tag, rel.commit, key.hint, sorted(found.subjects), "verified")
    if out is not None:
        result.exported = export(found, out)
    return result


def export(found: Verified, out: Path) -> list[str]:
    """DIR/provenance.json (the DSSE envelope) and DIR/model.sig (the model-signing bundle)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in (("provenance.json", found.envelope), ("model.sig", found.bundle)):
        path = out / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_text(dumps(doc))
        os.replace(tmp, path)
        written.append(str(path))
    return written
