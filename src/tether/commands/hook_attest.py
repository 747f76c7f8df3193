"""The pre-receive hook's attestation rule: an environment that `meta.tether.attestation` (read
from the policy branch as it was before the push) names takes only a release whose attestation
verifies with the committed public key. The attestation may arrive in the same push: the pushed
notes commit is read before its ref moves (git gives the hook the pushed objects)."""

from __future__ import annotations

from tether.adapters.attestnotes import NOTES_REF
from tether.adapters.gitbase import ZERO
from tether.commands.hook_policy import BareWorkspace
from tether.core import attestation as at
from tether.errors import TetherError


def attestation_problem(ws: BareWorkspace, model: str, env: str, release: str | None,
                        pushed: dict[str, str]) -> str | None:
    """Why the environment's new head may not be accepted (None: it may). `pushed`: ref ->
    new object id of this push."""
    pol = at.parse_policy(ws.settings(model).attestation, ws.environments(model))
    if not pol.required(env):
        return None
    if not release:
        return "names no release, where meta.tether.attestation requires an attested one"
    from tether.adapters.attestkeys import public_from_pem
    from tether.registry.attested import verify_record

    pem = ws.git.show_or_none(ws.policy_ref, pol.key)
    if pem is None:
        return f"cannot be judged: the policy's attestation key {pol.key} is not on {ws.policy_ref}"
    notes = pushed.get(NOTES_REF) if pushed.get(NOTES_REF) not in (None, ZERO) else ws.git.ref(NOTES_REF)
    tag_obj = pushed.get(f"refs/tags/{release}") or ws.git.ref(f"refs/tags/{release}")
    if notes is None or tag_obj is None:
        return f"brings {release}, which has no attestation here (push refs/notes/tether-attest with it)"
    try:
        key = public_from_pem(pem.encode(), pol.key, "meta.tether.attestation.key")
        commit = ws.git.out("rev-parse", f"{tag_obj}^{{commit}}")
        verify_record(ws.git, release, tag_obj, commit, ws.git.tree_of(commit), key, notes=notes)
    except TetherError as exc:
        return f"brings {release} without a valid attestation: {exc.message}"
    return None


def notes_problems(ws: BareWorkspace, old: str, new: str) -> list[str]:
    """A push of refs/notes/tether-attest may add attestations, never change or remove one: not
    deleted, fast-forward only, and every release record of every note it had kept as it was."""
    import json

    if new == ZERO:
        return ["attestations are never removed: refusing to delete refs/notes/tether-attest"]
    if old == ZERO:
        return []
    if not ws.git.is_ancestor(old, new):
        return ["non-fast-forward update of refs/notes/tether-attest: attestations are append-only"]
    out = []
    diff = ws.git.run("diff-tree", "-r", "-z", "--no-renames", old, new).stdout.split("\0")
    for status, path in zip(diff[0::2], diff[1::2]):
        kind = status.split()[-1] if status.strip() else ""
        if kind not in ("M", "D"):
            continue

        def records(rev: str) -> dict:
            res = ws.git.run("cat-file", "blob", f"{rev}:{path}", check=False)
            try:
                doc = json.loads(res.stdout) if res.returncode == 0 else {}
            except ValueError:
                return {}
            return doc.get("releases") or {} if isinstance(doc, dict) else {}

        before, after = records(old), records(new)
        out += [f"changes or removes the attestation of {tag}: an attestation is never changed or replaced"
                for tag in sorted(before) if after.get(tag) != before[tag]]
    return out
