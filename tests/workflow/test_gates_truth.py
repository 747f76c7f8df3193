"""Gates and releases give the same verdict in every clone (issue 26, items 4, 9, 10, 11, 14, 15).

Every test runs on the Hydra shape of tests/helpers/hydrashape.py (`hydra.enabled`, no compose stage, the
model among data files, metrics in reports/ outside the model's path), and where a verdict could
depend on the clone, also in a fresh clone of the bare origin after `dvc pull`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hydrashape import build_hydrashape, set_conf
from project import BIN
from shapes import clone

OPS = ("--approver", "ci", "--reason", "test")


def dvc_in(p, cwd: Path, *args: str) -> None:
    p.sh(os.path.join(BIN, "dvc"), *args, cwd=cwd)


def teammate(p, dest: Path) -> Path:
    """A fresh clone of the bare origin with the project's DVC remote, then `dvc pull`."""
    c = clone(p, dest)
    dvc_in(p, c, "pull", "-q")
    return c


def released_weak(p) -> tuple[str, str]:
    """v1 (both features) live in staging, v2 (one weak feature: f1 down about 28 %) released;
    everything pushed, then a full `dvc push` as the issue's author did."""
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    p.ok("promote", v1, "--env", "staging", *OPS, "--push")
    set_conf(p, train="weak")
    p.commit_all("train on x2 only")
    p.git("push", "-q", "origin", "main")
    v2 = p.ok("release", "--push", "--json").json()["tag"]
    p.dvc("push", "-q")
    return v1, v2


# -- item 4: the regression gate reads what it compares from the remote, in every clone -------
def test_regression_gate_refuses_alike_in_the_authors_and_a_fresh_clone(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    v1, v2 = released_weak(p)
    author = p.tether("promote", v2, "--env", "staging", *OPS, "--dry-run")
    assert author.code == 5, author.out + author.err
    assert "regression: metrics regress more than 5%" in author.err and "f1 0.8125 → 0.5865" in author.err

    c = teammate(p, tmp_path / "teammate")
    res = p.tether("promote", v2, "--env", "staging", *OPS, "--dry-run", cwd=c)
    assert res.code == 5, res.out + res.err
    assert "f1 0.8125 → 0.5865" in res.err and "could not compare" not in res.out + res.err
    # and it really moved nothing
    assert p.git("for-each-ref", "refs/heads", cwd=c).count("\n") == 0


def test_regression_gate_without_the_metrics_anywhere_refuses_with_exit_7_naming_them(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    v1, v2 = released_weak(p)
    lock = p.git("show", f"{v1}:dvc.lock")
    md5 = lock.split("path: reports/metrics.json", 1)[1].split("md5: ", 1)[1].split()[0]
    obj = p.store / "files/md5" / md5[:2] / md5[2:]
    assert obj.is_file()
    obj.chmod(0o644)
    obj.unlink()  # the remote lost v1's metrics file
    c = teammate(p, tmp_path / "teammate")
    res = p.tether("promote", v2, "--env", "staging", *OPS, "--dry-run", cwd=c)
    assert res.code == 7, res.out + res.err
    assert f"{v1}: reports/metrics.json ({md5[:12]})" in res.err, res.err
    assert "declare the evaluation's metrics file" not in res.err
    assert "git checkout TAG && dvc push" in res.err


def test_release_push_puts_the_metrics_files_on_the_remote(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    plan = p.ok("release", "--dry-run", "--push", "--json").json()
    tag = p.ok("release", "--push", "--json").json()["tag"]
    lock = p.git("show", f"{tag}:dvc.lock")
    md5 = lock.split("path: reports/metrics.json", 1)[1].split("md5: ", 1)[1].split()[0]
    assert (p.store / "files/md5" / md5[:2] / md5[2:]).is_file()
    assert plan["steps"][0].startswith("push 5 DVC object(s)")  # 4 of the manifest + metrics, plan["steps"]


# -- item 9: a `promote --push` killed after its push --------------------------------------------
def test_promote_push_killed_after_the_push_does_not_block_later_promotes(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    pidfile = tmp_path / "tether.pid"
    hook = p.origin / "hooks/post-receive"
    # origin has taken the move and its GTO tag; tether dies (kill -9) before it records them here
    hook.write_text(f"#!/bin/sh\ncat >/dev/null\nkill -9 \"$(cat {pidfile})\"\n")
    hook.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "tether.cli", "promote", v1, "--env", "staging", *OPS, "--push"],
                            cwd=p.root, env=p.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pidfile.write_text(str(proc.pid))
    proc.communicate(timeout=300)
    assert proc.returncode == -9
    hook.unlink()
    on_origin = p.git("ls-remote", "--tags", str(p.origin), "shop#*")
    assert "refs/tags/shop#staging#1" in on_origin
    assert p.git("tag", "-l", "shop#*") == ""  # the local clone never recorded it

    set_conf(p, threshold=0.45)
    p.commit_all("threshold 0.45")
    p.git("push", "-q", "origin", "main")
    v2 = p.ok("release", "--push", "--json").json()["tag"]
    res = p.tether("promote", v2, "--env", "staging", *OPS, "--push", "--allow-regression", "test")
    assert res.code == 0, res.out + res.err
    tags = p.git("ls-remote", "--tags", str(p.origin), "shop#*")
    assert "refs/tags/shop#staging#2" in tags
    assert p.git("rev-parse", "staging") == p.git("ls-remote", str(p.origin), "refs/heads/staging").split()[0]


# -- item 10: what belongs to a release is read from the release's commit ----------------------
def test_smoke_gate_reads_eval_data_and_smoke_from_the_releases_commit(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    # HEAD now names another eval slice: v1 recorded its predictions on data/eval.csv
    yml = p.root / "dvc.yaml"
    yml.write_text(yml.read_text().replace("eval_data: data/eval.csv", "eval_data: data/train.csv"))
    p.commit_all("HEAD evaluates on another slice")
    res = p.tether("promote", v1, "--env", "staging", *OPS, "--dry-run")
    assert res.code == 0, res.out + res.err
    assert "gate smoke: ok - entrypoint reproduces its eval predictions" in res.out, res.out
    # HEAD turning the smoke test off does not switch it off for a release that has it on
    yml.write_text(yml.read_text().replace("        eval_data: data/train.csv\n",
                                           "        eval_data: data/train.csv\n        smoke: false\n"))
    p.commit_all("HEAD: no smoke test")
    res = p.tether("promote", v1, "--env", "staging", *OPS, "--dry-run")
    assert res.code == 0 and "gate smoke: ok - entrypoint reproduces" in res.out, res.out + res.err


# -- item 11: the serving entrypoint and what it imports are the release's code ----------------
def test_a_change_to_the_serving_code_alone_is_a_patch_release(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    p.ok("release", "--push")
    rec = p.root / "src/shop/records.py"  # imported by the entrypoint only; no stage runs it
    rec.write_text(rec.read_text().replace('record["x1"]', 'record.get("x1", record.get("X1"))'))
    p.commit_all("serving: accept X1")
    p.git("push", "-q", "origin", "main")
    plan = p.ok("release", "--dry-run", "--json").json()
    assert plan["bump"] == "patch" and plan["version"] == "1.0.1", plan
    assert "serving code changed (src/shop/records.py)" in plan["reasons"], plan["reasons"]
    p.ok("release", "--push")

    # a teammate changes the entrypoint's own file, in a fresh clone
    c = teammate(p, tmp_path / "teammate")
    serve = c / "src/shop/serve.py"
    serve.write_text(serve.read_text().replace('"decision": bool(', '"decision": bool(  # served\n                        '))
    p.git("commit", "-qam", "serve: comment", cwd=c)
    res = p.tether("release", "--json", cwd=c)
    assert res.code == 0, res.out + res.err
    assert res.json()["tag"] == "shop@v1.0.2" and "serving code changed (src/shop/serve.py)" in res.json()["reasons"]
    # and nothing else moved: the next release without any change is refused as before
    res = p.tether("release", cwd=c)
    assert res.code == 4 and "nothing in the tuple changed" in res.err, res.out + res.err


# -- item 14: reproduce compares what the release recorded, wherever its metrics file is -------
def test_reproduce_finds_the_predictions_digest_in_a_metrics_file_outside_the_model(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    p.dvc("push", "-q")
    c = teammate(p, tmp_path / "teammate")
    res = p.tether("reproduce", tag, "--json", cwd=c)
    assert res.code == 0, res.out + res.err
    out = res.json()
    assert out["identical"] is True
    assert out["parts"]["predictions"]["state"] == "identical", out["parts"]
    assert out["parts"]["metrics"]["state"] == "identical", out["parts"]
    # and an evaluation that no longer computes what its commit's dvc.lock records still differs
    ev = c / "src/shop/evaluate.py"
    ev.write_text(ev.read_text().replace("scores.append(1 / (1 + math.exp(-z)))", "scores.append(1 / (1 + math.exp(-z * 1.01)))"))
    p.git("commit", "-qam", "evaluate differently", cwd=c)
    p.git("tag", "-a", "shop@v1.0.1-rc.1", "-m", "rc", cwd=c)  # a release tag of a commit whose outputs differ
    res = p.tether("reproduce", "shop@v1.0.1-rc.1", "--json", cwd=c)
    assert res.code == 6, res.out + res.err
    assert res.json()["parts"]["predictions"]["state"] == "differs" and "predictions differ" in res.err


# -- item 15: the smaller ones, same repository --------------------------------------------------
def _find(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj
        for v in obj.values():
            if (hit := _find(v, key)) is not None:
                return hit
    if isinstance(obj, list):
        for v in obj:
            if (hit := _find(v, key)) is not None:
                return hit
    return None


def test_the_runtime_part_is_the_repositorys_lock_file(tmp_path):
    import hashlib

    p = build_hydrashape(tmp_path / "p")
    tag = p.ok("release", "--push", "--json").json()["tag"]
    runtime = _find(p.ok("show", tag, "--json").json(), "lock_sha256")
    lock = hashlib.sha256((p.root / "requirements.lock").read_bytes()).hexdigest()
    assert runtime is not None and runtime["lock_sha256"] == lock and runtime["lock_file"] == "requirements.lock"


def test_threshold_only_change_is_a_patch(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    p.ok("release", "--push")
    set_conf(p, threshold=0.45)  # conf/ and params.yaml: evaluate.threshold only
    p.commit_all("threshold 0.45")
    plan = p.ok("release", "--dry-run", "--push", "--json").json()
    assert (plan["bump"], plan["version"]) == ("patch", "1.0.1"), (plan["bump"], plan["reasons"])
    assert plan["reasons"] == ["threshold changed"], plan["reasons"]


def _experiment_kept(tmp_path):
    """`dvc exp run -S evaluate.threshold=0.45` kept: params.yaml is conf/ plus an override conf/ lacks."""
    p = build_hydrashape(tmp_path / "p")
    params = p.root / "params.yaml"
    params.write_text(params.read_text().replace("threshold: 0.5", "threshold: 0.45"))
    p.dvc("repro", "-q")
    p.commit_all("experiment kept")
    return p, params


def test_the_params_conf_hint_names_what_composes_params_yaml(tmp_path):
    p, _params = _experiment_kept(tmp_path)
    res = p.tether("release", "--dry-run")
    assert res.code == 5, res.out + res.err
    assert "evaluate.threshold=0.45" in res.err
    # no compose stage here: `dvc repro` composes nothing; DVC's hydra.enabled composes on `dvc exp run`
    assert "`dvc repro` instead would compose" not in res.err
    assert "`dvc exp run` (DVC's hydra.enabled) instead would compose params.yaml from conf/ again" in res.err


def test_a_refused_dry_run_lists_every_gate_it_checked(tmp_path):
    p, params = _experiment_kept(tmp_path)
    res = p.tether("release", "--dry-run")
    assert res.code == 5 and "release refused: params-conf" in res.err, res.out + res.err
    lines = res.out.splitlines()
    assert lines[0] == "would not release:", res.out
    for gate, status in (("clean-tree", "ok"), ("dvc-status", "ok"), ("params-conf", "FAIL"), ("weights", "ok"),
                         ("data", "ok"), ("code", "ok"), ("params", "ok"), ("threshold", "ok")):
        assert any(line.startswith(f"  gate {gate}: {status} - ") for line in lines), (gate, res.out)
    assert (p.root / "params.yaml").read_text() == params.read_text() and p.tags() == []


def test_a_training_output_beside_the_weights_is_part_of_the_weights_and_old_tags_stay_trusted(tmp_path):
    from tether.core import manifest as mf

    p = build_hydrashape(tmp_path / "p")
    plan = p.ok("release", "--dry-run", "--push", "--json").json()
    comps = plan["manifest"]["components"]
    assert [w["path"] for w in comps["weights"]] == ["data/model.json", "data/model_params.json"]
    assert [d["path"] for d in comps["data"]] == ["data/eval.csv", "data/train.csv"]

    # a tag an older tether wrote: model_params.json listed as data. Same files, same md5s: trusted.
    old = json.loads(json.dumps(plan["manifest"]))
    moved = [w for w in old["components"]["weights"] if w["path"] == "data/model_params.json"]
    old["components"]["weights"] = [w for w in old["components"]["weights"] if w not in moved]
    old["components"]["data"] = sorted(old["components"]["data"] + moved, key=lambda e: e["path"])
    msg = tmp_path / "msg"
    msg.write_text(mf.tag_message(old, "Release shop v1.0.0"))
    p.git("tag", "-a", "shop@v1.0.0", "-F", str(msg))
    p.dvc("push", "-q")
    res = p.tether("check", "--json")
    assert res.code == 0, res.out + res.err
    shown = p.ok("show", "shop@v1.0.0", "--json").json()
    assert "data/model_params.json" in json.dumps(shown)


def test_a_release_without_a_serving_entrypoint_is_refused_saying_its_commit_lacks_it(tmp_path):
    p = build_hydrashape(tmp_path / "p")
    yml = p.root / "dvc.yaml"
    with_entrypoint = yml.read_text()
    yml.write_text(with_entrypoint.replace("        serve:\n          entrypoint: src/shop/serve.py:Model\n", ""))
    p.commit_all("no entrypoint yet")
    v1 = p.ok("release", "--push", "--json").json()["tag"]
    yml.write_text(with_entrypoint)
    p.commit_all("HEAD declares the entrypoint")
    res = p.tether("promote", v1, "--env", "staging", *OPS, "--dry-run")
    assert res.code != 0, res.out + res.err
    assert f"{v1}'s commit" in res.err and "declares no meta.tether.serve.entrypoint (HEAD does" in res.err, res.err
    assert p.git("for-each-ref", "refs/heads/staging") == ""


def test_a_forged_derivation_kept_under_git_tether_never_passes_the_gate(tmp_path):
    """The derivations tether keeps under .git/tether/derived feed promote's gates, gc and
    deploy, and a file there is anybody's to write: each is sealed with this user's key
    (adapters/sealed.py). A forged one (the weak release's f1 raised to 0.99), plain or sealed
    with another key, is not used: the gate refuses as before and the file is derived again."""
    import hashlib
    import hmac

    p = build_hydrashape(tmp_path / "p")
    _v1, v2 = released_weak(p)
    assert p.tether("promote", v2, "--env", "staging", *OPS, "--dry-run").code == 5  # derives and keeps v2
    kept = p.root / ".git/tether/derived"
    files = [f for f in kept.iterdir() if f.suffix == ".json"]
    commit = p.git("rev-list", "-n", "1", v2).strip()
    target = next(f for f in files if f.name.startswith(commit))
    body = json.loads(target.read_text())["body"]  # what the seal covers
    real = json.loads(body)
    assert real["manifest"]["metrics"]["f1"] < 0.6
    real["manifest"]["metrics"]["f1"] = 0.99
    forged = json.dumps(real, sort_keys=True)
    other = hmac.new(b"k" * 32, forged.encode(), hashlib.sha256).hexdigest()
    for text in (forged, json.dumps({"seal": other, "body": forged})):
        target.write_text(text)
        res = p.tether("promote", v2, "--env", "staging", *OPS, "--dry-run")
        assert res.code == 5, res.out + res.err
        assert "f1 0.8125 → 0.5865" in res.err, res.err
        assert json.loads(json.loads(target.read_text())["body"])["manifest"]["metrics"]["f1"] < 0.6  # derived again
