"""A release's attestation judged: its record read from the git note (tether.adapters.attestnotes),
both signatures verified against a public key, the statement checked against the release it
claims to describe, and the model artifact's files compared with the statement's subjects.
`tether attest --verify` and `tether deploy --require-attestation` ask the same questions here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.adapters.attestnotes import NOTES_REF, record_of
from tether.adapters.gitrepo import Git
from tether.core import attestation as at
from tether.core import dsse
from tether.digest import sha256_file
from tether.errors import IntegrityError

if TYPE_CHECKING:  # annotations only: a promote or check without a policy never loads `cryptography`
    from tether.adapters.attestkeys import PublicKey
    from tether.adapters.workspace import Workspace
    from tether.registry.registry import Registry
    from tether.registry.release import Release

ATTESTATION = ".tether/attestation.json"  # a deployed release's verified attestation, beside its stamp
_HINT = ("attest it with the key whose public half you trust (tether attest REF --key KEY --push), "
         "or fetch origin's attestations (git fetch origin " + NOTES_REF + ":" + NOTES_REF + ")")


@dataclass(frozen=True)
class Verified:
    """A record whose two signatures verify with the key, about this release."""

    tag: str
    statement: dict[str, Any]
    subjects: dict[str, str]  # release-tree path -> sha256
    envelope: dict[str, Any]  # provenance.json
    bundle: dict[str, Any]  # model.sig
    key: str  # the public key's SHA-256 hint


def _open_signed(env_doc: Any, key: PublicKey, what: str, tag: str) -> dict[str, Any]:
    try:
        payload, sig, _keyid = dsse.open_envelope(env_doc)
        if not key.verify(sig, dsse.pae(dsse.PAYLOAD_TYPE, payload)):
            raise IntegrityError(f"{tag}: the {what} is not signed by this key (SHA-256 {key.hint[:16]}…)",
                                 hint=_HINT)
        return dsse.payload_statement(payload)
    except dsse.EnvelopeError as exc:
        raise IntegrityError(f"{tag}: the {what} is malformed: {exc}", hint=_HINT) from None


def verify_record(git: Git, tag: str, tag_object: str, commit: str, tree: str, key: PublicKey,
                  notes: str | None = None) -> Verified:
    """The release's attestation, verified with `key`, or IntegrityError (exit 6) saying why.
    `notes`: a notes commit to read instead of the notes ref (the pre-receive hook's)."""
    rec = record_of(git, commit, tag, notes)
    if rec is None:
        raise IntegrityError(f"{tag} has no attestation (no note under {NOTES_REF} on {commit[:12]})", hint=_HINT)
    return verify_documents(tag, rec.get("provenance"), rec.get("model_sig"), key, commit, tree)


def verify_documents(tag: str, provenance: Any, model_sig: Any, key: PublicKey, commit: str, tree: str) -> Verified:
    """The two documents of an attestation (read from anywhere: untrusted), verified with `key`
    and against the release's commit and tree; IntegrityError (exit 6) saying why not."""
    statement = _open_signed(provenance, key, "provenance", tag)
    try:
        env, hint = dsse.open_bundle(model_sig)
    except dsse.EnvelopeError as exc:
        raise IntegrityError(f"{tag}: model.sig is malformed: {exc}", hint=_HINT) from None
    if hint != key.hint:
        raise IntegrityError(f"{tag}: model.sig names another key (SHA-256 {hint[:16]}…)", hint=_HINT)
    ms = _open_signed(env, key, "model.sig", tag)
    source = _source(statement)
    if source.get("gitCommit") != commit or source.get("gitTree") != tree:
        raise IntegrityError(f"{tag}: the attestation describes commit {str(source.get('gitCommit'))[:12]}, "
                             f"not the release's {commit[:12]}", hint="the tag was moved or re-created: releases never change")
    try:
        subs = at.statement_subjects(statement)
    except ValueError as exc:
        raise IntegrityError(f"{tag}: the provenance's subjects are malformed: {exc}", hint=_HINT) from None
    art = statement["predicate"]["buildDefinition"]["externalParameters"].get("artifact") or {}
    want = dsse.model_signing_statement(Path(str(art.get("path"))).name,
                                        dsse.model_files(str(art.get("path")), at.subjects(subs)))
    if ms.get("predicate", {}).get("resources") != want["predicate"]["resources"]:
        raise IntegrityError(f"{tag}: model.sig and the provenance name different files", hint=_HINT)
    return Verified(tag, statement, subs, provenance, model_sig, key.hint)


def _source(statement: dict[str, Any]) -> dict[str, Any]:
    try:
        deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        return next(d["digest"] for d in deps if isinstance(d, dict) and d.get("name") == "source")
    except (KeyError, TypeError, StopIteration):
        return {}


def artifact_digests(root: Path, artifact_path: str) -> dict[str, str]:
    """{release-tree path: sha256} of the model artifact's files under `root` (a release tree),
    as model_signing sees them: every file, git's metadata at the top left out."""
    from tether.digest import tree_sha256_of

    path = root / artifact_path
    if path.is_file() and not path.is_symlink():
        return {artifact_path: sha256_file(path)}
    _tree, files = tree_sha256_of(path)
    return {name: files[name[len(artifact_path) + 1:]] for name in at.artifact_files(artifact_path, files)}


def deployed_problems(root: Path, artifact_path: str, entries: list[dict], attested: dict[str, str]) -> list[str]:
    """What differs between a deployed release's artifact and the attested subjects, reusing the
    sha256 deploy verified for each DVC output as it placed it (a directory through its tree
    digest); only files git placed (small) are hashed here. Names are listed, not hashed."""
    from tether.digest import tree_sha256

    path = root / artifact_path
    on_disk = ([artifact_path] if path.is_file() else at.artifact_files(artifact_path, _names_under(path)))
    problems = at.compare_subjects(attested, {n: attested.get(n, "?" * 64) for n in on_disk})
    if problems:
        return problems
    covered: set[str] = set()
    for e in entries:
        p, sha, md5 = e.get("path"), e.get("sha256"), str(e.get("md5") or "")
        if not isinstance(p, str) or not (p == artifact_path or p.startswith(artifact_path + "/")):
            continue
        if md5.endswith(".dir"):
            mine = {n[len(p) + 1:]: attested[n] for n in attested if n.startswith(p + "/")}
            covered.update(f"{p}/{r}" for r in mine)
            if tree_sha256(mine) != sha:
                problems.append(f"{p}/: the deployed directory is not the attested one")
        else:
            covered.add(p)
            if attested.get(p) != sha:
                problems.append(f"{p}: deployed sha256 {str(sha)[:16]}…, attested {attested.get(p, '')[:16]}…")
    for name in sorted(set(attested) - covered):
        actual = sha256_file(root / name)
        if actual != attested[name]:
            problems.append(f"{name}: sha256 {actual[:16]}…, attested {attested[name][:16]}…")
    return problems


def _names_under(root: Path) -> list[str]:
    import os

    return [os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/") for d, _dirs, names in os.walk(root)
            for n in names]


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def policy_problem(ws: "Workspace", rel: "Release", env: str) -> tuple[bool, str | None]:
    """(required, problem) for `rel` entering or running in `env` under the model's committed
    attestation policy (meta.tether.attestation): the release must carry an attestation signed
    by the committed public key. Origin's attestations are fetched first, when it is reachable."""
    pol = at.parse_policy(ws.settings(rel.name.model).attestation, ws.environments(rel.name.model))
    if not pol.required(env):
        return False, None
    import contextlib

    from tether.adapters.attestkeys import load_public
    from tether.adapters.attestnotes import fetch_notes
    from tether.core import paths
    from tether.errors import TetherError

    try:
        key = load_public(paths.inside(ws.root, pol.key, "meta.tether.attestation.key"), "meta.tether.attestation.key")
    except TetherError as exc:
        return True, exc.message
    with contextlib.suppress(TetherError):
        fetch_notes(ws.git)
    try:
        verify_record(ws.git, rel.tag, rel.tag_object, rel.commit, rel.tree, key)
    except TetherError as exc:
        return True, exc.message
    return True, None


def findings(reg: "Registry", releases: list["Release"]) -> list[tuple[str, str]]:
    """(environment, problem) for `tether check`: an environment the policy covers whose live
    release has no valid attestation by the committed key."""
    out = []
    by_tag = {r.tag: r for r in releases}
    for model in sorted({r.name.model for r in releases}):
        pol = at.parse_policy(reg.ws.settings(model).attestation, reg.ws.environments(model))
        for env in pol.environments:
            events = [e for e in reg.history(model, env) if e.source != "gto"]
            rel = by_tag.get(events[0].release or "") if events else None
            if rel is None:
                continue
            required, problem = policy_problem(reg.ws, rel, env)
            if required and problem:
                out.append((env, f"live release {rel.tag} is not attested as meta.tether.attestation requires: {problem}"))
    return out
