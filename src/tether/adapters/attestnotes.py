"""Where attestations live: a git note on the release's commit, under `refs/notes/tether-attest`,
so they travel with the release through the same git remotes and never rewrite it (the tag, its
commit and its tree stay as they are).

A note is one JSON document for every release tag on that commit:
    {"tether_attestations": 1, "releases": {"<model>@vX.Y.Z": {"tag_object": …, "key": …,
     "provenance": <DSSE envelope>, "model_sig": <model-signing bundle>}}}
Adding a release's attestation adds a key; changing or replacing one is refused
(tether.commands.attest). The notes ref moves only forward: a fetch fast-forwards it, a push is
git's plain fast-forward push, and a notes history that diverged from origin's is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from tether.adapters.gitrepo import Git
from tether.errors import Conflict

NOTES_REF = "refs/notes/tether-attest"
FETCHED = "refs/tether/attest-origin"  # origin's notes ref as last fetched, before it is merged
FORMAT = 1
MAX_NOTE = 16 * 1024 * 1024


def _note_text(git: Git, commit: str, notes: str | None) -> str | None:
    """The note's text from the notes ref, or from the notes commit `notes` (a pre-receive hook
    reads the one being pushed, before its ref moves): git's notes tree names a note by the
    annotated object's id, whole or fanned out as ab/cdef…."""
    if notes is None:
        res = git.run("notes", f"--ref={NOTES_REF}", "show", commit, check=False)
        return res.stdout if res.returncode == 0 else None
    for path in (commit, f"{commit[:2]}/{commit[2:]}", f"{commit[:2]}/{commit[2:4]}/{commit[4:]}"):
        res = git.run("cat-file", "blob", f"{notes}:{path}", check=False)
        if res.returncode == 0:
            return res.stdout
    return None


def read_note(git: Git, commit: str, notes: str | None = None) -> dict[str, Any]:
    """The note on `commit` as written by tether ({} when there is none). Untrusted: anyone who
    can push the notes ref can write one, so every record is verified by signature before use."""
    text = _note_text(git, commit, notes)
    if not text or not text.strip():
        return {}
    if len(text) > MAX_NOTE:
        return {"releases": {}, "problem": "the note is too large"}
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return {"releases": {}, "problem": "the note is not JSON"}
    if not isinstance(doc, dict) or doc.get("tether_attestations") != FORMAT or not isinstance(doc.get("releases"), dict):
        return {"releases": {}, "problem": "the note is not a tether attestation note"}
    return doc


def record_of(git: Git, commit: str, tag: str, notes: str | None = None) -> dict[str, Any] | None:
    rec = read_note(git, commit, notes).get("releases", {}).get(tag)
    return rec if isinstance(rec, dict) else None


def add_record(git: Git, commit: str, tag: str, record: dict[str, Any]) -> None:
    """Add `tag`'s record to the note on `commit`, keeping every other release's; Conflict if the
    tag has one already or the notes ref moved meanwhile (compare-and-swap on the notes ref)."""
    old_ref = git.ref(NOTES_REF)
    doc = read_note(git, commit)
    if doc.get("problem"):
        raise Conflict(f"the attestation note on {commit[:12]} is unreadable ({doc['problem']}); nothing was written",
                       hint=f"inspect it: git notes --ref={NOTES_REF} show {commit}")
    releases = dict(doc.get("releases") or {})
    if tag in releases:
        raise Conflict(f"{tag} is already attested; an attestation is never changed or replaced")
    releases[tag] = record
    text = json.dumps({"tether_attestations": FORMAT, "releases": releases}, indent=1, sort_keys=True) + "\n"
    fd, path = tempfile.mkstemp(prefix="tether-attest-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        git.run("notes", f"--ref={NOTES_REF}", "add", "-f", "-F", path, commit,
                env={"GIT_NOTES_REF": NOTES_REF})
    finally:
        os.unlink(path)
    new_ref = git.ref(NOTES_REF)
    parent = git.rev_parse(f"{new_ref}^1") if new_ref else None
    if new_ref is None or parent != old_ref:
        raise Conflict(f"{NOTES_REF} moved while {tag}'s attestation was added",
                       hint="run tether attest again")


def fetch_notes(git: Git, remote: str = "origin") -> bool:
    """Bring origin's attestations in: the local notes ref fast-forwards to origin's. False when
    origin has none; Conflict when the two histories diverged (neither contains the other)."""
    if not git.remote_url(remote):
        return False
    if not git.fetch_optional(remote, f"+{NOTES_REF}:{FETCHED}"):
        return False
    theirs = git.ref(FETCHED)
    ours = git.ref(NOTES_REF)
    if theirs is None or theirs == ours:
        return True
    if ours is None or git.is_ancestor(ours, theirs):
        git.update_ref(NOTES_REF, theirs, ours, "tether attest: fetch origin's attestations")
    elif not git.is_ancestor(theirs, ours):
        raise Conflict(f"the local {NOTES_REF} and origin's have diverged",
                       hint=f"merge them by hand (git notes --ref={NOTES_REF} merge {FETCHED}) or drop the "
                            f"local one if it holds nothing new (git update-ref -d {NOTES_REF}), then retry")
    return True


def push_notes(git: Git, remote: str = "origin") -> None:
    """A plain fast-forward push of the notes ref; origin's newer notes are fetched first."""
    fetch_notes(git, remote)
    git.push(remote, f"{NOTES_REF}:{NOTES_REF}")
