"""`tether export mlflow` against a real MLflow tracking store (a sqlite file in tmp_path).

On the churn shape (a model kept as a `dvc add`ed file, no training stage): releases become model
versions tagged with the tuple, environments become aliases, re-running changes nothing, and
after a tether rollback a re-export moves the alias back while MLflow keeps both moves.

The model each new version carries: on the reference project (fraud-detector, the built-in skops
loader) and on a text classifier served by its own entrypoint, `mlflow.pyfunc.load_model` in a
fresh interpreter answers exactly what `tether serve` answers for the same records; a file added to
or a byte changed in the logged release makes loading raise.
"""

from __future__ import annotations

import json
import sys

import pytest
from shapes import build_churn, retrain_churn

OPS = ("--approver", "ops", "--reason")


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    from project import isolated_home

    with isolated_home(tmp_path_factory, "mlflow"):
        p = build_churn(tmp_path_factory.mktemp("mlflow") / "p", "dvc")
        p.ok("release", "--push", "-m", "first churn")
        for env in ("staging", "production"):
            p.ok("promote", "churn@v1.0.0", "--to", env, *OPS, f"{env}: first")
        retrain_churn(p, 2, "dvc")
        p.ok("release", "--push")
        for env in ("staging", "production"):
            p.ok("promote", "churn@v1.1.0", "--to", env, *OPS, f"{env}: retrained", "--allow-regression", "test")
        yield p


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _by_release(client) -> dict[str, object]:
    return {mv.tags["tether.release"]: mv for mv in client.search_model_versions("name='churn'")}


def test_export_rollback_reexport_moves_the_alias_and_keeps_both_moves(churn, tmp_path):
    p = churn
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = p.ok("export", "mlflow", "--tracking-uri", uri, "--json").json()
    assert first["created"] == ["churn@v1.0.0", "churn@v1.1.0"] and first["changed"]
    client = _client(uri)
    versions = _by_release(client)
    v1, v2 = str(versions["churn@v1.0.0"].version), str(versions["churn@v1.1.0"].version)
    assert client.get_model_version_by_alias("churn", "production").version == int(v2)
    assert client.get_model_version_by_alias("churn", "staging").version == int(v2)
    # every part of the tuple, as git and the manifest have it
    mv = versions["churn@v1.0.0"]
    manifest = p.ok("show", "churn@v1.0.0", "--json").json()
    assert mv.tags["tether.commit"] == p.git("rev-parse", "churn@v1.0.0^{commit}")
    assert mv.tags["tether.tag_object"] == p.git("rev-parse", "churn@v1.0.0")
    assert mv.tags["tether.threshold"] == str(manifest["components"]["threshold"]["value"])
    assert mv.tags["tether.params.sha256"] == manifest["components"]["params"]["sha256"]
    for e in manifest["components"]["data"] + manifest["components"]["weights"]:
        assert mv.tags[f"tether.{'data' if e in manifest['components']['data'] else 'weights'}.{e['path']}"] \
            == str(e.get("sha256") or e.get("md5"))
    assert mv.tags["tether.metric.accuracy"] == str(manifest["metrics"]["accuracy"])

    # idempotent: a second run changes nothing, in the report and in MLflow
    before = {t: (m.version, m.tags) for t, m in _by_release(client).items()}
    model_tags = client.get_registered_model("churn").tags
    again = p.ok("export", "mlflow", "--tracking-uri", uri, "--json").json()
    assert again["changed"] is False and again["created"] == [] and again["moved"] == []
    assert {t: (m.version, m.tags) for t, m in _by_release(client).items()} == before
    assert client.get_registered_model("churn").tags == model_tags

    p.ok("rollback", "--env", "production", "--approver", "sam", "--reason", "alert: churn up")
    res = p.ok("export", "mlflow", "--tracking-uri", uri)
    assert "alias    churn:production → version " + v1 + " (moved)" in res.out
    assert "alias    churn:staging → version " + v2 + " (same)" in res.out
    assert client.get_model_version_by_alias("churn", "production").version == int(v1)
    assert len(_by_release(client)) == 2  # no version was added by the rollback
    moves = {k: json.loads(v) for k, v in client.get_registered_model("churn").tags.items()
             if k.startswith("tether.history.production.")}
    assert [(m["action"], m["release"]) for _, m in sorted(moves.items())] == [
        ("promote", "churn@v1.0.0"), ("promote", "churn@v1.1.0"), ("rollback", "churn@v1.0.0")]
    assert moves["tether.history.production.0003"]["approver"] == "sam"
    assert moves["tether.history.production.0003"]["reason"] == "alert: churn up"


def test_read_commands_never_import_mlflow(churn, tmp_path):
    for args in (["list"], ["show", "churn@v1.0.0"], ["history"], ["status"], ["report", "-o", str(tmp_path / "r.html")]):
        code = ("import sys\nfrom tether.cli import main\n"
                f"sys.argv = ['tether', '-C', {str(churn.root)!r}, *{args!r}]\n"
                "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
                "assert not [m for m in sys.modules if m.split('.')[0] == 'mlflow'], 'mlflow imported'\n")
        res = churn.sh(sys.executable, "-c", code, check=False)
        assert res.code == 0, (args, res.err)


def test_a_bad_ref_changes_nothing_in_mlflow(churn, tmp_path):
    db = tmp_path / "untouched.db"
    res = churn.tether("export", "mlflow", "churn@v9.9.9", "--tracking-uri", f"sqlite:///{db}")
    assert res.code == 3, res.err
    assert not db.exists()  # refused before the tracking store was opened


def test_a_version_an_older_tether_exported_is_kept_and_named(churn, tmp_path):
    """Versions made before exports carried a model (source `git:<commit>`) are left alone, and named."""
    uri = f"sqlite:///{tmp_path / 'old.db'}"
    client = _client(uri)
    client.create_registered_model("churn")
    commit = churn.git("rev-parse", "churn@v1.0.0^{commit}")
    client.create_model_version("churn", source=f"git:{commit}", tags={
        "tether.release": "churn@v1.0.0", "tether.tag_object": churn.git("rev-parse", "churn@v1.0.0")})
    res = churn.ok("export", "mlflow", "churn@v1.0.0", "--tracking-uri", uri, "--json").json()
    assert res["existing"] == ["churn@v1.0.0"] and res["without_model"] == ["churn@v1.0.0"]
    assert "churn@v1.0.0" not in res["created"]
    (old,) = [mv for mv in client.search_model_versions("name='churn'") if mv.tags["tether.release"] == "churn@v1.0.0"]
    assert old.source == f"git:{commit}" and old.tags["tether.commit"] == commit  # kept, its tags completed
    out = churn.ok("export", "mlflow", "churn@v1.0.0", "--tracking-uri", uri).out
    assert "1 version(s) exported by an older tether carry no model (churn@v1.0.0)" in out, out
    # the new version's model is what tether serve would load: churn's pickle, without an entrypoint,
    # is refused by MLflow's load_model with serve's own reason
    staging = str(client.get_model_version_by_alias("churn", "staging").version)
    code, err = _notebook(churn, tmp_path, uri, [f"models:/churn/{staging}"], [{"x": 1}])
    assert code != 0 and "weights are a pickle, which tether never loads itself" in err, err


# --- the model an exported version carries: loaded by MLflow in a fresh interpreter ---------------

FRAUD = [{"amount": 250.0, "hour": 3, "merchant_category": 7, "distance_from_home_km": 120.5, "card_age_days": 40,
          "txn_count_24h": 9, "foreign": 1, "online": 1, "amount_to_avg_ratio": 4.2, "device_risk_score": 0.7},
         {"amount": 12.5, "hour": 14, "merchant_category": 2, "distance_from_home_km": 1.2, "card_age_days": 900,
          "txn_count_24h": 1, "foreign": 0, "online": 0, "amount_to_avg_ratio": 0.4, "device_risk_score": 0.05}]

# What a user's notebook does: nothing of tether imported, only mlflow and pandas.
NOTEBOOK = """\
import json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
records, bad = json.loads(sys.argv[3]), json.loads(sys.argv[4])
answers = []
for model_uri in json.loads(sys.argv[2]):
    model = mlflow.pyfunc.load_model(model_uri)
    out = model.predict(pd.DataFrame(records))
    assert model.predict(records).to_dict("records") == out.to_dict("records")  # a list of records too
    answers.append(out.to_dict("records"))
refused = None
if bad:
    try:
        model.predict(pd.DataFrame(bad))
    except Exception as exc:
        refused = f"{type(exc).__name__}: {exc}"
print(json.dumps({"predictions": answers[0], "answers": answers, "tether": out.attrs.get("tether"),
                  "flavors": sorted(model.metadata.flavors), "refused": refused}))
"""


def _notebook(p, cwd, uri: str, model_uris: list[str], records: list, bad: list | None = None):
    """Load and predict in a separate, fresh Python process, as a user's notebook would (nothing
    of tether imported by hand); (exit code, its answer or its stderr)."""
    res = p.sh(sys.executable, "-c", NOTEBOOK, uri, json.dumps(model_uris), json.dumps(records), json.dumps(bad),
               cwd=cwd, check=False)
    return res.code, (json.loads(res.out.strip().splitlines()[-1]) if res.code == 0 else res.err)


def _served(p, tmp_path, release: str, records: list) -> dict:
    """tether serve's own answer for `records`: the environment deployed and served over HTTP."""
    from servehelp import call, serve, serving

    target = tmp_path / "serving"
    p.ok("deploy", "--env", "production", "--target", str(target))
    with serve(p, target, tmp_path / "serve.log") as url:
        serving(url, release)
        code, body, _ = call(url, "/predict", {"records": records})
    assert code == 200, body
    return body


def test_an_exported_version_loads_in_a_fresh_python_and_answers_as_tether_serve(project_live, tmp_path):
    p = project_live  # fraud-detector@v1.0.0 live in production
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = p.ok("export", "mlflow", "--tracking-uri", uri, "--json").json()
    assert res["created"] == ["fraud-detector@v1.0.0"] and res["without_model"] == []
    # the logged models live beside the database, not in the work tree
    assert (tmp_path / "mlflow-artifacts").is_dir() and not (p.root / "mlruns").exists()
    assert p.git("status", "--porcelain") == ""
    served = _served(p, tmp_path, "fraud-detector@v1.0.0", FRAUD)

    client = _client(uri)
    mv = client.get_model_version_by_alias("fraud-detector", "production")
    assert mv.run_id and mv.source.endswith("/model")
    code, got = _notebook(p, tmp_path, uri, ["models:/fraud-detector@production", f"models:/fraud-detector/{mv.version}"],
                          FRAUD, [{**FRAUD[0], "hour": "three"}])
    assert code == 0, got
    assert got["predictions"] == served["predictions"] and got["answers"][1] == served["predictions"]
    assert [r["score"] for r in got["predictions"]] == served["scores"]
    assert [r["decision"] for r in got["predictions"]] == served["decisions"]
    assert got["tether"]["threshold"] == served["threshold"] == 0.3
    assert got["tether"]["release"] == "fraud-detector@v1.0.0" and got["tether"]["commit"] == served["commit"]
    assert got["flavors"] == ["python_function"]
    assert mv.tags["tether.manifest.sha256"] == got["tether"]["manifest_sha256"]
    # a record the schema refuses is refused, as /predict answers it with a 422
    assert got["refused"].startswith("InvalidRecords") and "hour" in got["refused"], got["refused"]

    # a file added to the logged release (code MLflow would import): loading raises
    (release,) = [d for d in (tmp_path / "mlflow-artifacts").rglob("release") if d.parent.name == "data"]
    (release / "src" / "extra.py").write_text("print('not in the release')\n")
    code, err = _notebook(p, tmp_path, uri, ["models:/fraud-detector@production"], FRAUD)
    assert code != 0 and "IntegrityError" in err and "changed, added or removed" in err, err
    (release / "src" / "extra.py").unlink()
    code, _ = _notebook(p, tmp_path, uri, ["models:/fraud-detector@production"], FRAUD[:1])
    assert code == 0
    # a byte changed in the logged model: loading raises, no model comes back
    weights = [f for f in release.rglob("*.skops") if f.is_file()]
    assert weights, sorted(str(f) for f in release.rglob("*"))
    from project import corrupt

    corrupt(weights[0])
    code, err = _notebook(p, tmp_path, uri, ["models:/fraud-detector@production"], FRAUD)
    assert code != 0 and "IntegrityError" in err and "does not match the manifest" in err, err


def test_a_release_with_its_own_entrypoint_loads_through_it(tmp_path):
    from servehelp import OPS
    from textserve import build_textserve

    p = build_textserve(tmp_path / "p")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", tag, "--env", "production", *OPS, "--skip-staging", "test")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    p.ok("export", "mlflow", "--tracking-uri", uri, "--artifact-location", str(tmp_path / "elsewhere"))
    assert [d for d in (tmp_path / "elsewhere").rglob("release") if d.parent.name == "data"]
    assert not (tmp_path / "mlflow-artifacts").exists()
    texts = [{"text": "Great wonderful movie, really loved the cast"}, {"text": "awful boring plot and a dull ending"}]
    served = _served(p, tmp_path, tag, texts)
    code, got = _notebook(p, tmp_path, uri, ["models:/textclf@production"], texts, [{"text": 42}])
    assert code == 0, got
    assert got["predictions"] == served["predictions"]
    assert [r["featurizer"] for r in got["predictions"]] == ["v1", "v1"] and got["tether"]["loader"] == "entrypoint"
    assert got["refused"].startswith("InvalidRecords") and "text" in got["refused"], got["refused"]
