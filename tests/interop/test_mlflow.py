"""`tether export mlflow` against a real MLflow tracking store (a sqlite file in tmp_path).

On the churn shape (a model kept as a `dvc add`ed file, no training stage): releases become model
versions tagged with the tuple, environments become aliases, re-running changes nothing, and
after a tether rollback a re-export moves the alias back while MLflow keeps both moves.
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
