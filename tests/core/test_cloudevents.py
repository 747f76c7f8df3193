"""Moves as CloudEvents and the HMAC over their delivery (pure): table tests."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from tether.core import cloudevents as ce
from tether.errors import UsageError

ROW = {"env": "production", "commit": "c" * 40, "action": "promote", "release": "churn@v1.1.0",
       "previous": "churn@v1.0.0", "approver": "lead@example.com", "reason": "better recall",
       "time": "2026-12-05T10:00:00.000001Z", "tree": "t" * 40, "trailers": {"Tether-Weight": "25"},
       "source": "tether", "signature": {"status": "G", "principal": "lead@example.com", "key": "SHA256:k",
                                         "verified": True, "problem": None, "enforced": True, "extra": 1}}


@pytest.mark.parametrize("changes, want_type", [
    ({}, "dev.tether.promoted"),
    ({"action": "rollback"}, "dev.tether.rolledback"),
    ({"action": "weight"}, "dev.tether.weight.changed"),
    ({"action": "outside", "source": "outside"}, "dev.tether.moved.outside"),
    ({"action": "assign", "source": "gto"}, "dev.tether.gto.assigned"),
    ({"action": "unassign", "source": "gto"}, "dev.tether.gto.unassigned"),
])
def test_a_move_becomes_one_event(changes, want_type):
    ev = ce.move_event("/tether/churn", "churn", "production", {**ROW, **changes})
    assert ev["type"] == want_type and ev["specversion"] == "1.0" and ev["subject"] == "production"
    assert ev["data"]["group"] is None and ev["data"]["weight"] == 25 and ev["data"]["signature"]["principal"] == "lead@example.com"
    assert "extra" not in ev["data"]["signature"]  # only the verdict's documented fields


def test_the_id_names_what_the_event_describes_and_nothing_else():
    a = ce.move_event("/tether/churn", "churn", "production", ROW)
    assert a["id"] == ce.move_event("https://elsewhere/x", "churn", "production", {**ROW, "reason": "x"})["id"]
    assert a["id"] != ce.move_event("/tether/churn", "churn", "production", {**ROW, "commit": "d" * 40})["id"]
    assert a["id"] != ce.move_event("/tether/churn", "churn", "staging", ROW)["id"]
    r1 = ce.release_event("/s", "churn", "churn@v1.0.0", "o" * 40, "c" * 40, ROW["time"], "tess", None)
    r2 = ce.release_event("/s", "churn", "churn@v1.0.0", "p" * 40, "c" * 40, ROW["time"], "tess", None)
    assert r1["id"] != r2["id"] and r1["type"] == "dev.tether.released" and r1["data"]["note"] == ""


def test_the_signature_is_the_hmac_of_the_exact_body():
    body = ce.body(ce.move_event("/s", "churn", "production", ROW))
    header = ce.sign(body, b"k")
    assert header == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert ce.verify(body, b"k", header) and ce.verify(body, b"k", header + "\n")
    assert not ce.verify(body, b"other", header)
    assert not ce.verify(body.replace(b"better", b"worse"), b"k", header)
    assert not ce.verify(body, b"k", None) and not ce.verify(body, b"k", "sha256=")


def test_events_order_by_instant_across_zones():
    a = {"id": "a", "time": "2026-12-05T10:00:00+02:00"}  # 08:00Z
    b = {"id": "b", "time": "2026-12-05T09:00:00Z"}
    c = {"id": "c", "time": "not a time"}
    assert [e["id"] for e in ce.order([b, a, c])] == ["c", "a", "b"]


@pytest.mark.parametrize("raw, want", [
    (None, ()), ({}, ()),
    ({"urls": ["https://h.example/x", "http://127.0.0.1:9/h"]}, ("https://h.example/x", "http://127.0.0.1:9/h")),
])
def test_policy(raw, want):
    assert ce.policy(raw).urls == want


@pytest.mark.parametrize("raw, why", [
    ([], "must be a mapping"),
    ({"urls": "https://h.example/x"}, "must be a list"),
    ({"urls": ["file:///etc/passwd"]}, "not an http(s) URL"),
    ({"urls": ["https://a:b@h.example/x"]}, "carries credentials"),
    ({"urls": ["https://h.example/ x"]}, "is not a URL"),
    ({"urls": [], "source": "two words"}, "source must be a URI"),
    ({"hooks": []}, "unknown key 'hooks'"),
])
def test_policy_refusals(raw, why):
    with pytest.raises(UsageError, match=re.escape(why)):
        ce.policy(raw)


def test_the_default_source_names_the_model():
    assert ce.policy({}).source_for("churn") == "/tether/churn"
    assert ce.policy({"source": "https://git.example.com/t/r"}).source_for("churn") == "https://git.example.com/t/r"
