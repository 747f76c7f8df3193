"""Moves as CloudEvents 1.0 (structured JSON mode), and the HMAC that signs their delivery.

One event per environment move (a promotion, a rollback, a canary's weight, a commit made
outside tether, a GTO assignment) and per release tag. An event's `id` is derived from what it
describes (the environment and the move's commit, or the tag and its object), so the event the
post-receive hook sends for a push and the one `tether events --since` replays from history
later are the same event, and a receiver can drop duplicates by `id`. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from tether.clock import parse_iso
from tether.errors import UsageError

SPEC_VERSION = "1.0"
SIGNATURE_HEADER = "X-Tether-Signature"  # "sha256=<hex HMAC-SHA256 of the request body>"
CONTENT_TYPE = "application/cloudevents+json"

# A move's Tether-Action (or its source) -> the event's type
TYPES = {
    "promote": "dev.tether.promoted",
    "rollback": "dev.tether.rolledback",
    "weight": "dev.tether.weight.changed",
    "outside": "dev.tether.moved.outside",  # a commit on the branch that tether did not make
    "gto-assign": "dev.tether.gto.assigned",  # a GTO assignment tag, read as a move
    "gto-unassign": "dev.tether.gto.unassigned",
}
RELEASED = "dev.tether.released"


@dataclass(frozen=True)
class Policy:
    """`meta.tether.events` in dvc.yaml: where the post-receive hook sends a model's events,
    and the CloudEvents `source` they carry (default `/tether/<model>`; name the repository,
    e.g. `https://git.example.com/team/fraud`, when one receiver hears several)."""

    urls: tuple[str, ...] = ()
    source: str | None = None

    def source_for(self, model: str) -> str:
        return self.source or f"/tether/{model}"


def policy(raw: object) -> Policy:
    """The events policy, validated where it enters (a usage error names the key)."""
    where = "meta.tether.events in dvc.yaml"
    if raw is None or raw == {}:
        return Policy()
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must be a mapping {{urls: [...], source: URI}}, not {str(raw)[:60]!r}")
    unknown = sorted(set(map(str, raw)) - {"urls", "source"})
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}", hint="known keys: urls, source")
    urls = raw.get("urls", [])
    if isinstance(urls, str) or not isinstance(urls, list):
        raise UsageError(f"{where}: urls must be a list of URLs, not {str(urls)[:60]!r}")
    source = raw.get("source")
    if source is not None and (not isinstance(source, str) or not source.strip() or len(source) > 1024
                               or any(c.isspace() for c in source)):
        raise UsageError(f"{where}: source must be a URI without spaces, not {str(source)[:60]!r}")
    return Policy(tuple(check_url(u, f"{where}: urls") for u in urls), source)


def move_event(source: str, model: str, env: str, row: dict) -> dict:
    """The event for one row of `tether history --json` (an environment's move)."""
    action = row.get("action", "")
    kind = f"gto-{action}" if row.get("source") == "gto" else "outside" if row.get("source") == "outside" else action
    signature = row.get("signature")
    data = {
        "model": model,
        "environment": env,
        "action": action,
        "source": row.get("source", "tether"),
        "release": row.get("release", ""),
        "previous": row.get("previous", "none"),
        "approver": row.get("approver", ""),
        "reason": row.get("reason", ""),
        "commit": row.get("commit", ""),
        "tree": row.get("tree", ""),
        "weight": _weight(row.get("trailers") or {}),
        "group": str((row.get("trailers") or {}).get("Tether-Group", "")) or None,  # moves made as one
        "signature": _verdict(signature),
    }
    return _event(source, model, TYPES.get(kind, TYPES["outside"]), subject=env,
                  key=f"move\0{model}\0{env}\0{row.get('commit', '')}\0{kind}\0{row.get('release', '')}",
                  time=row.get("time", ""), data=data)


def release_event(source: str, model: str, tag: str, tag_object: str, commit: str, time: str,
                  creator: str, note: str | None) -> dict:
    """The event for a release tag `<model>@vX.Y.Z`."""
    data = {"model": model, "release": tag, "tag_object": tag_object, "commit": commit, "creator": creator,
            "note": note or ""}
    return _event(source, model, RELEASED, subject=tag, key=f"release\0{tag}\0{tag_object}", time=time, data=data)


def _event(source: str, model: str, type_: str, subject: str, key: str, time: str, data: dict) -> dict:
    return {
        "specversion": SPEC_VERSION,
        "id": hashlib.sha256(key.encode()).hexdigest()[:32],
        "source": source,
        "type": type_,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }


def _weight(trailers: dict) -> int | None:
    raw = str(trailers.get("Tether-Weight", "")).strip()
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) <= 100 else None


def _verdict(signature) -> dict | None:
    """The signature verdict history computed for the move: who signed, and whether the
    policy accepts it (None: no verdict, e.g. a GTO tag)."""
    if not isinstance(signature, dict):
        return None
    keep = ("status", "verified", "principal", "key", "problem", "enforced")
    return {k: signature[k] for k in keep if k in signature}


def body(event: dict) -> bytes:
    """The request body: the event in structured JSON mode, keys sorted (the bytes the HMAC
    signs are exactly the bytes sent)."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(payload: bytes, secret: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()


def verify(payload: bytes, secret: bytes, header: str | None) -> bool:
    """A receiver's check: the header is the body's HMAC under the shared secret (compared in
    constant time)."""
    return isinstance(header, str) and hmac.compare_digest(sign(payload, secret), header.strip())


def check_url(url: object, where: str) -> str:
    """A webhook URL as the policy names it: http(s), a host, no spaces, no credentials (the
    policy is committed: a password there is readable by everyone who can clone)."""
    if not isinstance(url, str) or not url or len(url) > 2048 or any(c.isspace() for c in url):
        raise UsageError(f"{where}: {str(url)[:60]!r} is not a URL", hint="e.g. https://hooks.example.com/tether")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{where}: {url[:80]!r} is not an http(s) URL", hint="e.g. https://hooks.example.com/tether")
    if parts.username or parts.password:
        raise UsageError(f"{where}: {url[:80]!r} carries credentials, which the committed policy would publish",
                         hint="authenticate deliveries with the shared secret (X-Tether-Signature) instead")
    return url


def instant(event: dict) -> float:
    """When the event happened, as seconds since the epoch, whatever its time's zone (-inf for
    an event without a readable time)."""
    t = parse_iso(event.get("time") or "")
    return t.timestamp() if t is not None else float("-inf")


def order(events: list[dict]) -> list[dict]:
    """Oldest first; ties (one push) keep their given order; an event without a readable time
    goes first."""
    return sorted(events, key=instant)
