"""tether.api's read records (tether.library.answers): each one's `as_dict()` is exactly the view
it was built from (the CLI's `--json`), the records cannot be changed, and what `as_dict()`
returns is the caller's to change. tests/workflow/test_api.py checks the same against the CLI on
a real repository."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tether.library.answers import History, ModelStatus, ReleaseDiff, ReleaseRow, ShownRelease
from tether.registry.envstate import EnvState
from tether.registry.views import ROW_FIELDS, EnvView
from tether.registry.views import ModelStatus as ViewStatus

ROW = {"model": "m", "version": "1.2.0", "tag": "m@v1.2.0", "stage": "production,staging",
       "created_at": "2026-01-02T03:04:05+00:00", "commit": "c" * 40, "complete": False,
       "problem": "incomplete: no metrics", "kind": "incomplete", "metrics": {"f1": 0.5, "digest": "ab"},
       "note": "first\nline two"}
STATE = {"branch": "m/production", "local": "a" * 40, "remote": None, "relation": "local-only",
         "used": "m/production"}
SIG = {"status": "G", "principal": "lead@example.com", "key": "SHA256:x", "verified": True, "problem": None,
       "enforced": True}


def move(release: str, signature) -> dict:
    return {"env": "production", "commit": "d" * 40, "action": "promote", "release": release, "tag_object": "e" * 40,
            "previous": "none", "approver": "ops", "reason": "why", "time": "2026-01-02T03:04:05+00:00",
            "tree": "f" * 40, "trailers": {"Tether-Release": release}, "source": "tether", "signature": signature,
            "parents": ["e" * 40, "c" * 40]}


HISTORY = {"model": "m", "refused": "production: move dddddddddddd is unsigned",
           "environments": {"production": {"branch": "m/production", "ref": STATE,
                                           "events": [move("m@v1.2.0", SIG), move("", None)],
                                           "live_at": {"at": "2026-01-01", "release": None, "commit": None}},
                            "staging": {"branch": "staging", "ref": {**STATE, "relation": "absent", "local": None,
                                                                     "used": None}, "events": []}}}
DIFF = {"from": "m@v1.0.0", "to": "m@v1.1.0",
        "components": {"weights": {"changed": True, "added": ["w/new"], "removed": [], "modified": ["w/a", "w/b"]},
                       "data": {"changed": False, "added": [], "removed": [], "modified": []},
                       "code": {"changed": False, "added": [], "removed": [], "modified": []},
                       "params": {"changed": True, "keys": {"train.seed": {"from": 1, "to": [2, 3]}}},
                       "threshold": {"changed": True, "from": 0.3, "to": None}},
        "feature_schema_changed": True,
        "metrics": {"f1": {"from": 0.5, "to": 0.25, "delta": -0.25}, "n": {"from": None, "to": 3, "delta": None}}}
MANIFEST = {"model": "m", "version": "1.2.0", "components": {"threshold": {"value": 0.3, "source": "x"}}}


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) and a == b


@pytest.mark.parametrize("record, view", [
    (ReleaseRow.from_view(ROW), ROW),
    (History.from_view(HISTORY), HISTORY),
    (History.from_view({**HISTORY, "refused": None}), {k: v for k, v in HISTORY.items() if k != "refused"}),
    (ReleaseDiff.from_view(DIFF), DIFF),
])
def test_as_dict_is_the_view_it_came_from(record, view):
    assert _same(record.as_dict(), view)
    out = record.as_dict()
    json.dumps(out)  # plain JSON, no read-only mappings
    for value in out.values():
        if isinstance(value, dict):
            value.clear()  # the caller's copy: the record is unchanged
    assert _same(record.as_dict(), view)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.model = "x"  # type: ignore[misc, attr-defined]


def test_list_keys_are_the_views_row_fields_in_order():
    assert tuple(ReleaseRow.from_view(ROW).as_dict()) == ROW_FIELDS
    with pytest.raises(TypeError):
        ReleaseRow.from_view(ROW).metrics["f1"] = 1.0  # type: ignore[index]


def test_show_is_the_manifest_with_the_note_beside_it():
    shown = ShownRelease.from_view({"tag": "m@v1.2.0", "stage": "production", "manifest": MANIFEST, "note": "n"})
    assert shown.as_dict() == {**MANIFEST, "note": "n"} and shown.tag == "m@v1.2.0"
    assert ShownRelease.from_view({"tag": "t", "stage": "s", "manifest": MANIFEST, "note": None}).as_dict() == MANIFEST
    shown.as_dict()["components"]["threshold"]["value"] = 9
    assert shown.manifest["components"]["threshold"]["value"] == 0.3


def test_status_is_the_views_as_dict_and_renders_alike():
    gto = {"tag": "m#production#3", "gto": "m@v1.0.0", "branch": "m@v1.2.0"}
    view = ViewStatus("m", "m@v1.2.0", head="h" * 40, dirty=True, matches=["m@v1.2.0"])
    view.environments["production"] = EnvView("m@v1.2.0", None, EnvState("m", "production", **{
        k: STATE[k] for k in ("branch", "local", "remote", "relation")}), gto)
    view.environments["staging"] = EnvView(None, "b" * 40, EnvState("m", "staging", "staging", None, "b" * 40,
                                                                     "remote-only"))
    record = ModelStatus.from_view(view)
    assert _same(record.as_dict(), view.as_dict())
    assert record.environments["production"].gto == gto and record.environments["staging"].outside_commit == "b" * 40
    from tether.cli.render import status_output

    assert status_output([record], False) == status_output([view], False)  # the text, from either
