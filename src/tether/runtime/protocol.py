"""The line protocol between `tether serve` (tether.runtime.workerproc) and a release's worker
process (tether.runtime.worker): one JSON object per line, as types, with one encoder and one
decoder for both ends.

The worker's stdout carries one event first, `Ready` or `Failed`, then one `Reply` per request, in
order. Its stdin carries `Request`s. EOF on stdin stops the worker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Ready:
    """`{"event": "ready", …}`: the release is verified, loaded and smoke-tested (the `hello`)."""

    release: str
    model: str
    version: str
    commit: str
    manifest_sha256: str
    threshold: float | None
    loader: str
    schema: dict | None
    max_records: int | None
    smoke: str
    pid: int | None
    load_seconds: float | None
    eval_scores: list | None  # per-bucket counts of the eval scores the smoke test reproduced


@dataclass(frozen=True)
class Failed:
    """`{"event": "failed", "error", "hint", "exit_code"}`: the worker could not serve the release.
    A failure of tether's own checks carries `hint` (null or not); the model's own code failing
    to load carries no `hint` key at all (`hinted=False`)."""

    error: str | None
    exit_code: int | None
    hint: str | None = None
    hinted: bool = True


@dataclass(frozen=True)
class Request:
    """`{"id", "records"}` on stdin: records to predict, answered by the `Reply` with that id."""

    id: int
    records: list


@dataclass(frozen=True)
class Reply:
    """`{"id", "ok": true, "predictions"}` or `{"id", "ok": false, "status", "error"}`."""

    id: int
    ok: bool
    predictions: list | None = None
    status: int = 500
    error: str = "failed"


Message = Ready | Failed | Request | Reply
_COMPACT = (",", ":")


def encode(msg: Message) -> str:
    """The line for `msg`, newline included. What the worker writes refuses NaN and infinity
    (ValueError), and anything that is no JSON (TypeError), before a byte is written."""
    if isinstance(msg, Request):
        return json.dumps({"id": msg.id, "records": msg.records}, separators=_COMPACT) + "\n"
    data: dict[str, Any]
    if isinstance(msg, Reply):
        data = ({"id": msg.id, "ok": True, "predictions": msg.predictions} if msg.ok
                else {"id": msg.id, "ok": False, "status": msg.status, "error": msg.error})
    elif isinstance(msg, Ready):
        data = {"event": "ready", **{f.name: getattr(msg, f.name) for f in fields(Ready)}}
    else:
        data = {"event": "failed", "error": msg.error, **({"hint": msg.hint} if msg.hinted else {}),
                "exit_code": msg.exit_code}
    return json.dumps(data, allow_nan=False, separators=_COMPACT) + "\n"


def decode(line: str | bytes) -> Message | None:
    """The message on one line; None for a line that is none (not JSON, not an object, or an
    object neither end sends), which the reader skips."""
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    if "event" in msg:
        if msg["event"] == "ready":
            found: dict[str, Any] = {f.name: msg.get(f.name) for f in fields(Ready)}
            return Ready(**found)
        # any other event: the worker failed
        return Failed(msg.get("error"), msg.get("exit_code"), msg.get("hint"), "hint" in msg)
    if "records" in msg:
        return Request(msg["id"], msg["records"]) if "id" in msg else None
    if "id" in msg:
        return Reply(msg["id"], bool(msg.get("ok")), msg.get("predictions"), msg.get("status", 500),
                     msg.get("error", "failed"))
    return None
