"""tether as a library (issue 32): `tether.api.load` in a fresh clone of a bare origin gives the
release an environment names, verified byte for byte, and its model answers what `tether serve`
answers; damage is an IntegrityError, never a model; the work tree is never touched; the read
functions' records are the CLI's `--json`; `import tether.api` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tether.api
from project import Project, clone_of, corrupt, threshold_release
from servehelp import OPS, call, procs_in, serve, serving, until
from shapes import retrain_churn
from signhelp import forge_move
from textserve import build_textserve, set_featurizer

MODEL = "fraud-detector"
V1 = f"{MODEL}@v1.0.0"
RECORDS = [
    {"amount": 250.0, "hour": 3, "merchant_category": 7, "distance_from_home_km": 120.5, "card_age_days": 40,
     "txn_count_24h": 9, "foreign": 1, "online": 1, "amount_to_avg_ratio": 4.2, "device_risk_score": 0.7},
    {"amount": 12.5, "hour": 14, "merchant_category": 2, "distance_from_home_km": 1.5, "card_age_days": 900,
     "txn_count_24h": 1, "foreign": 0, "online": 0, "amount_to_avg_ratio": 0.4, "device_risk_score": 0.05},
]


def porcelain(p: Project) -> str:
    return p.git("status", "--porcelain", "--untracked-files=all")


@pytest.fixture
def published(project_live):
    """V1 live in production, and a later release V2 (not live), all pushed to the bare origin."""
    p = project_live
    v2 = threshold_release(p, 0.35)
    p.git("push", "-q", "origin", "production")
    return p, v2


def test_load_production_in_a_fresh_clone_answers_what_serve_answers(published, tmp_path):
    p, v2 = published
    c = clone_of(p, tmp_path)  # only origin's branches, an empty DVC cache
    before = porcelain(c)
    with tether.api.load("production", repo=c.root) as m:
        status = c.ok("status", "--json").json()[0]
        assert m.release == status["environments"]["production"] == V1 and m.env == "production"
        assert m.commit == c.git("rev-parse", f"{V1}^{{commit}}") == m.manifest["commit"]
        assert m.threshold == m.manifest["components"]["threshold"]["value"]
        assert m.path == Path(c.git("rev-parse", "--absolute-git-dir")) / "tether/loaded/releases" / V1
        assert not m.reused and (m.path / ".tether/stamp.json").is_file()
        got = m.predict(RECORDS)
        proba = m.predict_proba(RECORDS)
        assert m.loader == "skops"

        import pandas as pd

        frame = pd.DataFrame(RECORDS, index=["a", "b"])
        out = m.predict(frame)
        assert isinstance(out, pd.DataFrame) and list(out.index) == ["a", "b"]
        assert out.to_dict("records") == got
        assert m.predict_proba(frame)["score"].tolist() == proba
        assert len(procs_in(m.path)) == 1  # one worker, in the verified release directory
    until(lambda: not procs_in(m.path), "the worker to stop when the with block ends", 30)
    assert porcelain(c) == before  # the work tree is as it was
    assert len(got) == 2 and all(set(g) == {"score", "decision"} for g in got)
    assert proba == [g["score"] for g in got]
    assert [g["decision"] for g in got] == [s >= m.threshold for s in proba]

    # `tether serve` over a deploy of the same environment answers the same for the same records
    target = tmp_path / "serving"
    c.ok("deploy", "--env", "production", "--target", str(target))
    with serve(c, target, tmp_path / "serve.log") as url:
        serving(url, V1)
        code, body, _ = call(url, "/predict", {"records": RECORDS})
    assert code == 200 and body["release"] == V1, body
    assert body["predictions"] == got and body["scores"] == proba and body["threshold"] == m.threshold

    # in-process (the verifying skops loader): the same answers; a second load reuses the copy
    with tether.api.load("production", repo=c.root, in_process=True) as here:
        assert here.reused and here.predict(RECORDS) == got and here.loader == "skops"
        assert procs_in(here.path) == []  # no worker: the model is in this process
    # another release by its tag, and `latest`, from the same clone
    with tether.api.load(v2, repo=c.root) as m2, tether.api.load("latest", repo=c.root) as latest:
        assert m2.release == latest.release == v2 and m2.threshold == 0.35
        assert m2.predict_proba(RECORDS) == proba  # same weights, another threshold
        assert [g["decision"] for g in m2.predict(RECORDS)] == [s >= 0.35 for s in proba]
    assert porcelain(c) == before


def test_a_damaged_copy_or_cache_object_is_an_integrity_error_never_a_model(published, tmp_path):
    p, _v2 = published
    c = clone_of(p, tmp_path, "one")
    m = tether.api.load("production", repo=c.root)
    model_file = max((f for f in m.path.rglob("*") if f.is_file() and ".tether" not in f.parts),
                     key=lambda f: f.stat().st_size)
    corrupt(model_file)
    # the worker verifies every byte before it imports anything, as serve's workers do
    with pytest.raises(tether.api.IntegrityError) as err:
        m.predict(RECORDS)
    assert err.value.exit_code == 6 and model_file.name in err.value.message
    m.close()
    with pytest.raises(tether.api.IntegrityError) as err:  # and a later load refuses the copy
        tether.api.load("production", repo=c.root)
    assert "was changed after tether verified it" in err.value.message and str(m.path) in (err.value.hint or "")

    # another clone: its DVC cache holds a damaged object; a load into a fresh cache refuses it
    d = clone_of(p, tmp_path, "two")
    d.dvc("pull", "-q")
    objects = [f for f in (d.root / ".dvc/cache/files/md5").rglob("*") if f.is_file() and not f.name.endswith(".dir")]
    corrupt(max(objects, key=lambda f: f.stat().st_size))
    fresh = tmp_path / "fresh-cache"
    before = porcelain(d)
    with pytest.raises(tether.api.IntegrityError) as err:
        tether.api.load("production", repo=d.root, cache=fresh)
    assert err.value.exit_code == 6 and "corrupt" in (err.value.hint or ""), err.value
    assert list((fresh / "releases").iterdir()) == []  # nothing half-built is left to reuse
    assert porcelain(d) == before


def test_refusals_are_tethers_own_errors(published, tmp_path):
    p, _v2 = published
    with pytest.raises(tether.api.NotFound) as err:
        tether.api.load("staging", repo=p.root)
    assert err.value.exit_code == 3
    with pytest.raises(tether.api.NotFound):
        tether.api.load(f"{MODEL}@v7.0.0", repo=p.root)
    with pytest.raises(tether.api.UsageError) as err:
        tether.api.load("production", repo=p.root, cache=p.root / "models-here")
    assert err.value.exit_code == 2 and not (p.root / "models-here").exists()
    served = tmp_path / "serving"
    p.ok("deploy", "--env", "production", "--target", str(served))
    before = sorted(x.name for x in (served / "releases").iterdir())
    with pytest.raises(tether.api.UsageError) as err:  # a server's directory is deploy's alone
        tether.api.load(V1, repo=p.root, cache=served)
    assert "serving directory" in err.value.message and sorted(x.name for x in (served / "releases").iterdir()) == before
    with tether.api.load(V1, repo=p.root) as m:
        with pytest.raises(tether.api.UsageError) as err:  # the schema serve's /predict enforces
            m.predict([{**RECORDS[0], "amount": "lots"}])
        assert "amount" in err.value.message
        with pytest.raises(tether.api.UsageError):
            m.predict({"amount": 1.0})
    with pytest.raises(tether.api.UsageError):  # closed
        m.predict(RECORDS)


def test_what_the_signing_policy_rejects_is_never_loaded(signed):
    p, _keys = signed  # churn: production and its release tags must be signed
    m = tether.api.load("production", repo=p.root)
    assert m.release == "churn@v1.0.0"
    m.close()
    bad = forge_move(p, "production", "churn@v1.1.0", approver="lead@example.com", key=None)
    for refused in (lambda: tether.api.load("production", repo=p.root),
                    lambda: tether.api.history("production", repo=p.root)):
        with pytest.raises(tether.api.IntegrityError) as err:
            refused()
        assert err.value.exit_code == 6 and bad[:12] in err.value.message, err.value
    retrain_churn(p, 3)
    p.git("tag", "-a", "-m", "by hand", "churn@v1.2.0")  # annotated, unsigned
    with pytest.raises(tether.api.IntegrityError) as err:
        tether.api.load("churn@v1.2.0", repo=p.root)
    assert "release tag churn@v1.2.0" in err.value.message
    assert not (Path(p.git("rev-parse", "--absolute-git-dir")) / "tether/loaded/releases/churn@v1.2.0").exists()


def test_a_release_with_its_own_entrypoint_runs_its_own_code(tmp_path):
    p = build_textserve(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", v1, "--env", "production", *OPS, "--skip-staging", "test", "--push")
    c = clone_of(p, tmp_path)
    set_featurizer(c, "v2")  # the work tree's code differs from the release's: the release's runs
    before = porcelain(c)
    texts = [{"text": "Great wonderful movie, really loved the cast"}, {"text": "awful boring plot and a dull ending"}]
    with tether.api.load("production", repo=c.root) as m:
        assert m.release == v1 and m.loader == "entrypoint"
        got = m.predict(texts)
        assert [g["featurizer"] for g in got] == ["v1", "v1"] and got[0]["tokens"] == 7
        assert [g["label"] for g in got] == ["pos", "neg"]
        assert m.predict_proba(texts) == [g["score"] for g in got]
    with tether.api.load("production", repo=c.root, in_process=True) as here:
        with pytest.raises(tether.api.UsageError) as err:
            here.predict(texts)
        assert "entrypoint" in err.value.message and "textclf" not in sys.modules
    assert porcelain(c) == before


def test_the_read_functions_are_the_clis_json_on_both_paths(published):
    from tether.cli import fastread

    p, v2 = published
    p.git("fetch", "-q", "origin")
    cases = [
        (["list", "--json"], lambda: [r.as_dict() for r in tether.api.releases(repo=p.root)]),
        (["status", "--json"], lambda: [s.as_dict() for s in tether.api.status(repo=p.root)]),
        (["history", "--json"], lambda: tether.api.history(repo=p.root).as_dict()),
        (["history", "--env", "production", "--at", "2999-01-01T00:00:00Z", "--json"],
         lambda: tether.api.history("production", repo=p.root, at="2999-01-01T00:00:00Z").as_dict()),
        (["show", "production", "--json"], lambda: tether.api.show("production", repo=p.root).as_dict()),
        (["diff", V1, v2, "--json"], lambda: tether.api.diff(V1, v2, repo=p.root).as_dict()),
    ]
    for argv, api in cases:
        typer_path = p.ok(*argv).json()
        assert api() == typer_path, argv
        if argv[0] in fastread.OPTIONS:  # kept now: the fast path renders the kept view itself
            fast = fastread.answer(["-C", str(p.root), *argv])
            assert fast is not None and json.loads(fast) == typer_path, argv
    rows = tether.api.releases(repo=p.root)
    assert [r.tag for r in rows] == [v2, V1] and rows[1].stage == "production" and rows[0].complete
    st = tether.api.status(repo=p.root)[0]
    assert st.environments["production"].release == V1 and st.latest == v2
    hist = tether.api.history("production", repo=p.root)
    assert hist.environments["production"].moves[0].release == V1
    d = tether.api.diff(V1, v2, repo=p.root)
    assert d.threshold.changed and d.threshold.after == 0.35 and f"models/{MODEL}/threshold.json" in d.weights.modified
    assert f"models/{MODEL}/model.skops" not in d.weights.modified  # same fitted model
    with pytest.raises(AttributeError):
        rows[0].tag = "x"  # type: ignore[misc]


def test_import_tether_api_loads_nothing_heavy():
    heavy = ("dvc", "sklearn", "pandas", "numpy", "hydra", "omegaconf", "fastapi", "starlette", "uvicorn", "typer",
             "skops", "pydantic", "yaml", "scmrepo")
    code = ("import sys, tether.api; print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])));"
            "print(callable(tether.api.load))")
    out = subprocess.run([sys.executable, "-c", code, *heavy], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "True"], out
