"""Canary rollouts on real servers on 127.0.0.1: one `tether serve` runs production and the
canary in their own workers, a bounded request loop drives it, and `tether guard` (the real
CLI) watches /metrics and moves the environments. One project and one server for the module:
every test promotes its own canary, from the project's first source (restored before each test),
so no test needs another to have run first (xdist may run them on different workers)."""

from __future__ import annotations

import json

import pytest

from canaryhelp import Traffic, build_canary_project, make_failing, make_shifted, release, set_alpha, texts
from servehelp import OPS, call, serve, until

GUARD = ("guard", "--env", "canary", "--interval", "0.1", "--max-steps", "400", "--json")


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    base = tmp_path_factory.mktemp("canary")
    p = build_canary_project(base / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", v1, "--env", "production", *OPS, "--skip-staging", "first release")
    stable, canary = base / "stable", base / "canary"
    p.ok("deploy", "--env", "production", "--target", str(stable), "--smoke")
    source = {name: (p.root / name).read_text() for name in SOURCE}
    with serve(p, stable, base / "serve.log", "--canary-target", str(canary)) as url:
        until(lambda: call(url, "/ready")[0] == 200, "production served")
        yield {"p": p, "v1": v1, "url": url, "stable": stable, "canary": canary, "pool": texts(p),
               "source": source}


SOURCE = ("src/serve.py", "params.yaml", "dvc.yaml")  # what the tests edit


@pytest.fixture(autouse=True)
def first_source(rig):
    """Every test edits the project's first source, whatever an earlier test left."""
    for name, text in rig["source"].items():
        (rig["p"].root / name).write_text(text)


def live(p, env: str = "production") -> str:
    return p.ok("history", "--env", env, "--json").json()["environments"][env]["events"][0]["release"]


def start_canary(rig, tag: str) -> None:
    p = rig["p"]
    p.ok("promote", tag, "--env", "canary", *OPS, "--allow-regression", "a canary is how we find out")
    p.ok("deploy", "--env", "canary", "--target", str(rig["canary"]), "--smoke")
    rid = tag.replace("/", "--")
    until(lambda: (lambda r: r[1].get("canary", {}).get("release") == rid and r[1]["canary"]["weight"] == 10)(
        call(rig["url"], "/ready")), f"{tag} in the canary arm at 10%")


def guard(rig, *extra: str):
    p = rig["p"]
    res = p.tether(*GUARD, "--url", rig["url"], "--deploy", str(rig["canary"]),
                   "--deploy-stable", str(rig["stable"]), *extra)
    return res


def canary_moves(p, tag: str) -> list[dict]:
    events = p.ok("history", "--env", "canary", "--json").json()["environments"]["canary"]["events"]
    return [e for e in reversed(events) if e["release"] == tag]


def test_a_canary_failing_on_some_inputs_is_rolled_back_before_25_percent(rig):
    p = rig["p"]
    stable = live(p).replace("/", "--")
    make_failing(p)
    bad = release(p, "tokenizer: faster, crashes on '!!'")
    start_canary(rig, bad)
    with Traffic(rig["url"], rig["pool"]) as t:
        res = guard(rig)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["action"] == "rollback" and out["weight"] == 0, out
    breach = {c["name"]: c for c in out["checks"] if c["ok"] is False}
    errors = [breach[name] for name in ("error_rate", "error_ratio") if name in breach]  # the ceiling, the ratio
    assert errors and all(c["value"] >= c["threshold"] for c in errors), out  # the log-LR crossed its bound
    moves = canary_moves(p, bad)
    assert [(m["action"], m["trailers"]["Tether-Weight"]) for m in moves] == [("promote", "10"), ("rollback", "0")]
    rb = moves[-1]
    assert rb["approver"] == "tether-guard" and "error_rate: " in rb["reason"] and "log-LR" in rb["reason"]
    assert "errors of" in rb["reason"] and "false rollback ≤" in rb["reason"]  # the counts, the design error rates
    assert rb["trailers"]["Tether-Guard-Breach"].startswith("error_rat")
    assert "min_samples=40" in rb["trailers"]["Tether-Policy"]
    # the guard returned once the server confirmed the rollback: the canary arm takes nothing,
    # every later answer is production's
    assert out["live"] is True and "canary arm serves" in out["live_note"] and "at 0%" in out["live_note"], out
    ready = call(rig["url"], "/ready")[1]
    assert ready["canary"]["weight"] == 0
    for i in range(20):
        assert call(rig["url"], "/predict", {"key": f"user-{i}", "records": [{"text": "fine"}]})[2][
            "x-tether-release"] == stable
    errors = [a for a in t.answers if a[2] >= 500]
    assert errors and all(a[1] == bad.replace("/", "--") for a in errors)  # only the canary failed
    # one more step from cron: the canary takes no traffic, so the guard holds and moves nothing
    before = p.refs()
    res = p.tether("guard", "--env", "canary", "--url", rig["url"], "--once", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["action"] == "hold" and p.refs() == before


def test_a_canary_with_shifted_scores_is_rolled_back_on_the_distribution_with_no_errors(rig):
    p = rig["p"]
    make_shifted(p)
    shifted = release(p, "preprocessing: a text clean-up that reverses the text (broken)")
    start_canary(rig, shifted)
    with Traffic(rig["url"], [t.replace(" !!", "") for t in rig["pool"]]):
        res = guard(rig)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["action"] == "rollback", out
    by = {c["name"]: c for c in out["checks"]}
    assert by["error_rate"]["ok"] is True and by["error_rate"]["detail"].startswith("0 errors of"), by
    assert by["psi_vs_stable"]["ok"] is False and by["psi_vs_stable"]["value"] > 0.5, by
    # against its own recorded eval scores it looks fine: the eval ran the same broken code
    assert by["psi_vs_eval"]["ok"] is True, by
    rb = canary_moves(p, shifted)[-1]
    assert rb["action"] == "rollback" and "psi_vs_stable" in rb["trailers"]["Tether-Guard-Breach"]
    assert "error_rate: 0 errors of" in rb["reason"] and "canary" in rb["reason"]


def test_a_human_move_during_a_guard_step_wins_or_loses_by_compare_and_swap(rig):
    from tether.canary.weight import execute_weight, plan_weight
    from tether.errors import Conflict
    from tether.core.guard import ADVANCE, Decision, State
    from tether.canary.guardrun import Guard, Outcome
    from tether.adapters.workspace import Workspace

    p = rig["p"]
    set_alpha(p, 0.5)
    tag = release(p, "alpha 0.5")
    start_canary(rig, tag)
    ws = Workspace(p.root)
    g = Guard(ws, None, "canary", rig["url"])
    _sample, head, _tag, _w, _why = g.observe()
    # the guard decided to advance on `head`; a human sets 50% first: the human wins
    p.ok("canary", "weight", "50", "--env", "canary", "--approver", "alice", "--reason", "going faster by hand")
    advance = Decision(ADVANCE, 25, (), "checks passed (injected)", State(25))
    with pytest.raises(Conflict):
        g.act(Outcome(advance, "canary", tag), head)
    weights = [m["trailers"]["Tether-Weight"] for m in canary_moves(p, tag)]
    assert weights == ["10", "50"], weights
    # a human who planned before the guard moved loses: the guard's move stands
    human = plan_weight(Workspace(p.root), None, "canary", 75, approver="bob", reason="planned earlier")
    _s, head, _t, _w, _why = g.observe()
    g.act(Outcome(Decision(ADVANCE, 100, (), "checks passed (injected)", State(100)), "canary", tag), head)
    with pytest.raises(Conflict):
        execute_weight(Workspace(p.root), human)
    moves = canary_moves(p, tag)
    assert [(m["approver"], m["trailers"]["Tether-Weight"]) for m in moves] == [
        ("ops", "10"), ("alice", "50"), ("tether-guard", "100")]
    p.ok("canary", "weight", "0", "--env", "canary", "--approver", "alice", "--reason", "done with this one")


def test_a_good_canary_is_promoted_through_every_step_and_history_shows_each(rig):
    p = rig["p"]
    set_alpha(p, 0.9)
    good = release(p, "alpha 0.9")
    start_canary(rig, good)
    with Traffic(rig["url"], [t.replace(" !!", "") for t in rig["pool"]]) as t:
        res = guard(rig)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["action"] == "promote", out
    moves = canary_moves(p, good)
    assert [(m["action"], m["trailers"]["Tether-Weight"]) for m in moves] == [
        ("promote", "10"), ("weight", "25"), ("weight", "50"), ("weight", "100"), ("weight", "0")], moves
    for m in moves[1:4]:
        assert m["approver"] == "tether-guard" and "checks passed" in m["reason"] and "psi_vs_stable=" in m["reason"]
    prod = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"][0]
    assert prod["release"] == good and prod["approver"] == "tether-guard"
    assert "steps=10,25,50,100" in prod["trailers"]["Tether-Policy"] and prod["trailers"]["Tether-Canary"]
    # live when the guard returns: production serves it, and the canary arm takes nothing
    rid = good.replace("/", "--")
    assert out["live"] is True, out
    assert call(rig["url"], "/version")[1].get("release") == rid
    assert call(rig["url"], "/ready")[1]["canary"]["weight"] == 0
    # keys stuck to their arm while the weight rose: once a key went to the canary it stayed there
    seen: dict = {}
    for key, rel, _code in t.answers:
        seen.setdefault(key, []).append(rel)
    assert any(rid in rels for rels in seen.values())
    text = p.ok("history", "--env", "canary").out
    row = next(line for line in text.splitlines() if f"{good} at 25%" in line)
    assert "weight" in row and "tether-guard" in row and "guard: checks passed at weight 10" in row, text


def test_production_alone_rolls_back_to_the_last_good_release_or_pages_a_human(rig):
    """Production serves a release promoted over an earlier one. Traffic unlike its eval slice
    (every text gushing) shifts its live scores away from its recorded eval scores."""
    p = rig["p"]
    earlier = live(p)
    set_alpha(p, 0.8)
    newer = release(p, "alpha 0.8")
    p.ok("promote", newer, "--env", "production", *OPS, "--skip-staging", "test", "--allow-regression", "test")
    p.ok("deploy", "--env", "production", "--target", str(rig["stable"]), "--smoke")
    until(lambda: call(rig["url"], "/version")[1].get("release") == newer.replace("/", "--"), f"{newer} served")
    head = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"][0]
    gushing = ["great wonderful loved superb brilliant delightful"] * 5
    alone = ("guard", "--env", "production", "--url", rig["url"], "--interval", "0.1", "--max-steps", "400",
             "--deploy", str(rig["stable"]), "--json")
    # manual rollback policy: the evidence, exit 5, nothing moved
    dvc = (p.root / "dvc.yaml").read_text()
    (p.root / "dvc.yaml").write_text(dvc.replace("          max_ks: 0.35\n", "          max_ks: 0.35\n          rollback: manual\n"))
    with Traffic(rig["url"], gushing):
        res = p.tether(*alone)
    (p.root / "dvc.yaml").write_text(dvc)
    assert res.code == 5, (res.out, res.err)
    assert "psi_vs_eval=" in res.err and "BREACH" in res.err and "tether rollback --env production" in res.err
    after = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"][0]
    assert after["commit"] == head["commit"]
    # automatic: rolled back to the last known good release, deployed, with the evidence
    with Traffic(rig["url"], gushing):
        res = p.tether(*alone)
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["action"] == "rollback" and [c["name"] for c in out["checks"] if c["ok"] is False] == [
        "psi_vs_eval", "ks_vs_eval"], out
    ev = p.ok("history", "--env", "production", "--json").json()["environments"]["production"]["events"][0]
    assert ev["action"] == "rollback" and ev["release"] == earlier and ev["previous"] == newer
    assert "psi_vs_eval=" in ev["reason"] and ev["approver"] == "tether-guard"
    assert out["live"] is True, out
    assert call(rig["url"], "/version")[1].get("release") == earlier.replace("/", "--")


def test_a_move_is_confirmed_only_when_the_server_serves_it(rig):
    """The guard's confirmation reads what the server reports, not what it wrote: a weight the
    server is not at, or a server that does not answer, is "not yet following" after the
    timeout, and the confirmation never raises (the move in git stands either way)."""
    from tether.canary.guardrun import Guard, Outcome
    from tether.core.guard import HOLD, Decision, State
    from tether.adapters.workspace import Workspace

    stable = live(rig["p"]).replace("/", "--")
    g = Guard(Workspace(rig["p"].root), None, "canary", rig["url"])
    out = Outcome(Decision(HOLD, 0, (), "", State(0)), "canary", "x")
    g._confirm(out, [("stable", stable, None)], timeout=5)
    assert out.live is True and f"stable arm serves {stable}" in out.live_note, out.live_note
    g._confirm(out, [("stable", stable, None), ("canary", None, 37)], timeout=0.3)  # no canary is ever at 37%
    assert out.live is False and "not yet following after 0.3 s" in out.live_note, out.live_note
    g._confirm(out, [("stable", "someone--else", None)], timeout=0.3)
    assert out.live is False and f"stable arm serves {stable}" in out.live_note
    gone = Guard(Workspace(rig["p"].root), None, "canary", "http://127.0.0.1:1")
    gone._confirm(out, [("stable", stable, None)], timeout=0.3)
    assert out.live is False and "no metrics" in out.live_note


def test_once_bad_input_and_bad_settings_change_nothing(rig):
    p = rig["p"]
    before = p.refs()
    assert p.tether("guard", "--env", "canary", "--url", "ftp://127.0.0.1", "--once").code == 2
    res = p.tether("guard", "--env", "production", "--url", "http://127.0.0.1:1", "--once")
    assert res.code == 3 and "no metrics from http://127.0.0.1:1" in res.err, res.err
    for bad in ("101", "5.5", "ten"):
        res = p.tether("canary", "weight", bad, "--env", "canary", *OPS)
        assert res.code == 2 and "percentage" in res.err, (bad, res.err)
    res = p.tether("canary", "weight", "10", "--env", "production", *OPS)
    assert res.code == 2 and "not a canary" in res.err
    dvc = (p.root / "dvc.yaml").read_text()
    for edit, key in (("steps: [10, 25, 50, 100]", "steps: [10, 25]"), ("max_psi: 0.5", "max_psi: high"),
                      ("min_samples: 40", "min_sample: 40")):
        (p.root / "dvc.yaml").write_text(dvc.replace(edit, key))
        res = p.tether("canary", "weight", "20", "--env", "canary", *OPS)
        assert res.code == 2 and "meta.tether.guard." in res.err, res.err
    (p.root / "dvc.yaml").write_text(dvc)
    assert p.refs() == before
