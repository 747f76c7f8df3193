"""Which rollback a promotion must override (core/history.py `rollback_block`, core/gates.py
`rolled_back`): tables of environment histories built as tether writes them, and the same
histories with a move forged by hand."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from tether.core import gates
from tether.core.history import names_reason, not_tethers_move, rollback_block
from tether.core.moves import OVERRIDE_ROLLBACK, OVERRIDE_ROLLBACK_MOVE, Event


@dataclass(frozen=True)
class Rel:
    tag_object: str
    commit: str
    tree: str


RELS = {f"m@v{i}": Rel(f"obj{i}", f"rc{i}", f"tree{i}") for i in range(1, 5)}


def history(*moves: tuple) -> list[Event]:
    """Newest-first events from oldest-first (action, release[, extra trailers]) moves, each a
    commit shaped as tether makes it: parents [the move below, the release's commit]."""
    events: list[Event] = []
    below: Event | None = None
    for n, (action, tag, *extra) in enumerate(moves):
        rel = RELS[tag]
        trailers = {"Tether-Action": action, "Tether-Release": tag, "Tether-Tag-Object": rel.tag_object,
                    "Tether-Previous": below.release if below else "none", "Tether-Approver": f"who{n}",
                    "Tether-Reason": f"why {n}", **(extra[0] if extra else {})}
        ev = Event(env="production", commit=f"move{n}", action=action, release=tag, tag_object=rel.tag_object,
                   previous=trailers["Tether-Previous"], approver=f"who{n}", reason=f"why {n}",
                   time=f"2026-01-0{n + 1}T00:00:00Z", tree=rel.tree, trailers=trailers,
                   parents=((below.commit,) if below else ()) + (rel.commit,))
        events.insert(0, ev)
        below = ev
    return events


def override(rollback_move: str, text: str = "why 2, fixed") -> dict:
    return {OVERRIDE_ROLLBACK: text, OVERRIDE_ROLLBACK_MOVE: rollback_move}


@pytest.mark.parametrize(
    "moves,tag,blocked_by,overridden_by",
    [
        ([("promote", "m@v1"), ("promote", "m@v2")], "m@v2", None, None),  # never rolled back
        ([("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1")], "m@v2", "move2", None),
        ([("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1")], "m@v1", None, None),  # rolled back TO
        # a normal promotion of another release in between does not clear it
        ([("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1"), ("promote", "m@v3")], "m@v2", "move2",
         None),
        # overridden once: answered, also after other moves
        ([("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1"), ("promote", "m@v2", override("move2")),
          ("promote", "m@v3")], "m@v2", "move2", "move3"),
        # rolled back away from it again after the override: blocked by the newer rollback
        ([("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1"), ("promote", "m@v2", override("move2")),
          ("rollback", "m@v1")], "m@v2", "move4", None),
        # a canary's rollback to 0 % keeps its release: not a rollback away from it
        ([("promote", "m@v1"), ("rollback", "m@v1")], "m@v1", None, None),
        # two rollbacks in a row: each moved away from what ran before it
        ([("promote", "m@v1"), ("promote", "m@v2"), ("promote", "m@v3"), ("rollback", "m@v2"), ("rollback", "m@v1")],
         "m@v3", "move3", None),
        ([("promote", "m@v1"), ("promote", "m@v2"), ("promote", "m@v3"), ("rollback", "m@v2"), ("rollback", "m@v1")],
         "m@v2", "move4", None),
    ],
)
def test_the_newest_rollback_away_from_a_release_and_its_override(moves, tag, blocked_by, overridden_by):
    block, ignored = rollback_block(history(*moves), tag, RELS.get)
    assert ignored == []
    assert (block.rollback.commit if block else None) == blocked_by
    assert (block.override.commit if block and block.override else None) == overridden_by


@pytest.mark.parametrize(
    "forge,why",
    [
        (lambda ev: replace(ev, parents=("move1",)), "its parents are not [the move below it, the release's commit]"),
        (lambda ev: replace(ev, tree="tree2"), "its tree is not m@v1's tree"),
        (lambda ev: replace(ev, tag_object="objX"), "it records a tag object that is not m@v1's"),
        (lambda ev: replace(ev, trailers={k: v for k, v in ev.trailers.items() if k != "Tether-Approver"}),
         "it lacks Tether-Approver"),
        (lambda ev: replace(ev, source="outside"), None),  # not a tether event at all: not even considered
    ],
)
def test_a_rollback_tether_did_not_make_creates_no_block(forge, why):
    events = history(("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1"))
    events[0] = forge(events[0])
    block, ignored = rollback_block(events, "m@v2", RELS.get)
    assert block is None
    assert ignored == ([f"move2 ({why})"] if why else [])


def test_an_override_tether_did_not_make_clears_nothing():
    events = history(("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1"),
                     ("promote", "m@v2", override("move2")), ("promote", "m@v3"))
    events[1] = replace(events[1], parents=("move2",))  # the override, committed by hand
    block, ignored = rollback_block(events, "m@v2", RELS.get)
    assert block is not None and block.rollback.commit == "move2" and block.override is None
    assert ignored == ["move3 (its parents are not [the move below it, the release's commit])"]


def test_an_override_that_names_another_rollback_answers_nothing():
    events = history(("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1"),
                     ("promote", "m@v2", override("move9")), ("promote", "m@v3"))
    block, ignored = rollback_block(events, "m@v2", RELS.get)
    assert block is not None and block.rollback.commit == "move2" and block.override is None
    assert ignored == ["move3 (it overrides another rollback than move2)"]


def test_the_first_move_on_a_branch_has_only_the_releases_commit():
    ev = history(("promote", "m@v1"))[0]
    assert ev.parents == ("rc1",) and not_tethers_move(ev, None, RELS["m@v1"]) is None
    assert not_tethers_move(replace(ev, parents=("x",)), None, RELS["m@v1"]) == "its last parent is not the release's commit"


@pytest.mark.parametrize(
    "text,reason,ok",
    [
        ("alert: false positives up: fixed upstream", "alert: false positives up", True),
        ("ALERT:  false   positives up", "alert: false positives up", True),
        ("it is fine now", "alert: false positives up", False),
        ("alert: false positives", "alert: false positives up", False),
        ("anything", "", False),
    ],
)
def test_an_override_must_quote_the_reason(text, reason, ok):
    assert names_reason(text, reason) is ok


def test_the_gate_says_who_when_why_and_how_to_override():
    events = history(("promote", "m@v1"), ("promote", "m@v2"), ("rollback", "m@v1"))
    block, ignored = rollback_block(events, "m@v2", RELS.get)
    g = gates.rolled_back("production", "m@v2", block, ignored, None)
    assert not g.ok and g.error.exit_code == 5
    assert g.message == ('production was rolled back away from m@v2 by who2 at 2026-01-03T00:00:00Z '
                         '(move move2, to m@v1): "why 2"')
    assert "--override-rollback 'why 2: <why it is safe now>'" in (g.hint or "")
    wrong = gates.rolled_back("production", "m@v2", block, ignored, "fine")
    assert not wrong.ok and '--override-rollback "fine" does not quote that reason' in wrong.message
    right = gates.rolled_back("production", "m@v2", block, ignored, "why 2 - fixed")
    assert right.ok and right.message.startswith("overridden: production was rolled back away from m@v2")
    free = gates.rolled_back("production", "m@v3", None, [], "why 2")
    assert free.ok and free.message == ("production was never rolled back away from m@v3 (--override-rollback "
                                        "not needed: not recorded)")
