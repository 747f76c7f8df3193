"""`tether attest`: a release's signed SLSA provenance and OpenSSF model signature, stored as a git
note that travels through origin; verified by tether, by the real `model_signing verify key` CLI on a
deployed release, and required by `tether deploy --require-attestation`."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import jsonschema
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from project import clone_of, threshold_release

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
MODEL_SIGNING = str(Path(sys.executable).parent / "model_signing")
TAG = "fraud-detector@v1.0.0"


def keypair(where: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    priv, pub = where / f"{name}.key", where / f"{name}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def ms_verify(p, pub: Path, sig: Path, model: Path):
    return p.sh(MODEL_SIGNING, "verify", "key", "--public_key", str(pub), "--signature", str(sig), str(model),
                check=False)


def current_release(target: Path) -> str:
    return os.readlink(target / "current")


def test_attest_push_verify_export_and_model_signing_on_the_deployed_release(project_live, tmp_path):
    p = project_live
    priv, pub = keypair(tmp_path, "team")
    made = p.ok("attest", TAG, "--key", str(priv), "--json").json()
    assert made["outcome"] == "attested" and made["release"] == TAG
    assert "models/fraud-detector/model.skops" in made["subjects"]
    note = json.loads(p.git("notes", "--ref=tether-attest", "show", TAG + "^{commit}"))
    assert set(note["releases"]) == {TAG}

    out = tmp_path / "export"
    res = p.ok("attest", TAG, "--verify", "--public-key", str(pub), "--out", str(out))
    assert "attestation verified" in res.out
    env = json.loads((out / "provenance.json").read_text())
    import base64

    statement = json.loads(base64.b64decode(env["payload"]))
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / "in-toto-statement-v1.schema.json").read_text())).validate(statement)
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / "slsa-provenance-v1.schema.json").read_text())).validate(
        statement["predicate"])
    deps = {d["name"] for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert {"source", "data/split/train.parquet", "params.yaml", "conf", "src/fraud_detector/train.py"} <= deps

    target = tmp_path / "serve"
    t0 = time.perf_counter()
    p.ok("deploy", "--env", "production", "--target", str(target))
    deploy_s = time.perf_counter() - t0
    shutil.rmtree(target)
    t0 = time.perf_counter()
    p.ok("deploy", "--env", "production", "--target", str(target), "--require-attestation", str(pub))
    required_s = time.perf_counter() - t0
    print(f"deploy {deploy_s:.2f} s, with --require-attestation {required_s:.2f} s")
    model = target / "current" / "models" / "fraud-detector"
    ok = ms_verify(p, pub, out / "model.sig", model)
    assert ok.code == 0 and "Verification succeeded" in ok.out, ok.err

    changed = tmp_path / "changed" / "fraud-detector"
    shutil.copytree(model, changed)
    victim = changed / "threshold.json"
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[0] ^= 0x01
    victim.write_bytes(bytes(data))
    bad = ms_verify(p, pub, out / "model.sig", changed)
    assert bad.code != 0 and "Hash mismatch for 'threshold.json'" in bad.err

    added = tmp_path / "added" / "fraud-detector"
    shutil.copytree(model, added)
    (added / "extra.bin").write_bytes(b"x")
    bad = ms_verify(p, pub, out / "model.sig", added)
    assert bad.code != 0 and "extra.bin" in bad.err

    _other_priv, other_pub = keypair(tmp_path, "other")
    bad = ms_verify(p, other_pub, out / "model.sig", model)
    assert bad.code != 0
    res = p.tether("attest", TAG, "--verify", "--public-key", str(other_pub))
    assert res.code == 6 and "not signed by this key" in res.err


def test_a_fresh_clone_of_the_bare_origin_verifies_after_fetching(project, tmp_path):
    p = project
    priv, pub = keypair(tmp_path, "team")
    assert p.ok("attest", TAG, "--key", str(priv), "--push", "--json").json()["pushed"] is True
    c = clone_of(p, tmp_path)
    assert c.sh("git", "notes", "--ref=tether-attest", "list", check=False).out.strip() == ""
    t0 = time.perf_counter()
    res = c.ok("attest", TAG, "--verify", "--rehash", "--public-key", str(pub), "--out", str(tmp_path / "o"))
    print(f"verify in a fresh clone {time.perf_counter() - t0:.2f} s")
    assert "attestation verified" in res.out and (tmp_path / "o" / "model.sig").is_file()
    # plain git brings the notes too: what docs/attestation.md tells a reviewer
    c2 = clone_of(p, tmp_path, "clone2")
    c2.git("fetch", "origin", "refs/notes/tether-attest:refs/notes/tether-attest")
    note = json.loads(c2.git("notes", "--ref=tether-attest", "show", TAG + "^{commit}"))
    assert note["releases"][TAG]["model_sig"]["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"


def test_a_second_different_attestation_is_refused_and_the_same_one_is_a_noop(project, tmp_path):
    p = project
    priv, pub = keypair(tmp_path, "team")
    other, _ = keypair(tmp_path, "other")
    p.ok("attest", TAG, "--key", str(priv))
    before = p.git("rev-parse", "refs/notes/tether-attest")
    again = p.ok("attest", TAG, "--key", str(priv), "--json").json()
    assert again["outcome"] == "already-attested"
    res = p.tether("attest", TAG, "--key", str(other))
    assert res.code == 4 and "never changed or replaced" in res.err
    assert p.git("rev-parse", "refs/notes/tether-attest") == before
    p.ok("attest", TAG, "--verify", "--public-key", str(pub))


def test_deploy_require_attestation_refuses_unattested_and_foreign_and_switches_nothing(project_live, tmp_path):
    p = project_live
    priv, pub = keypair(tmp_path, "team")
    other, _ = keypair(tmp_path, "other")
    target = tmp_path / "serve"
    p.ok("attest", TAG, "--key", str(priv))
    p.ok("deploy", "--env", "production", "--target", str(target), "--require-attestation", str(pub))
    assert current_release(target) == f"releases/{TAG}"

    tag2 = threshold_release(p, 0.35)
    p.ok("promote", tag2, "--env", "production", "--approver", "ci", "--reason", "test", "--skip-staging", "test",
         "--allow-regression", "test")
    res = p.tether("deploy", "--env", "production", "--target", str(target), "--require-attestation", str(pub),
                   "--dry-run")
    assert res.code == 6 and "has no attestation" in res.err  # the dry run predicts the refusal
    res = p.tether("deploy", "--env", "production", "--target", str(target), "--require-attestation", str(pub))
    assert res.code == 6 and "has no attestation" in res.err and "nothing was deployed" in res.err
    assert current_release(target) == f"releases/{TAG}"

    p.ok("attest", tag2, "--key", str(other))
    res = p.tether("deploy", "--env", "production", "--target", str(target), "--require-attestation", str(pub))
    assert res.code == 6 and "not signed by this key" in res.err
    assert current_release(target) == f"releases/{TAG}"
    assert not (target / "releases" / tag2).exists()


def test_the_reviewers_check_in_the_docs_runs_with_git_dvc_and_model_signing_only(project_live, tmp_path):
    """docs/attestation.md's block, run as it stands in a fresh clone: no tether on PATH."""
    import re

    p = project_live
    priv, pub = keypair(tmp_path, "team")
    p.ok("attest", TAG, "--key", str(priv), "--push")
    p.git("push", "-q", "origin", "production")
    c = clone_of(p, tmp_path)
    shutil.copy(pub, c.root / "attest.pub")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "attestation.md").read_text()
    block = re.search(r"without tether.*?```bash\n(.*?)```", doc, re.S).group(1)
    bare_path = os.pathsep.join([str(Path(MODEL_SIGNING).parent.parent / "no-tether"), "/usr/bin", "/bin"])
    env = {"PATH": str(Path(sys.executable).parent) + os.pathsep + bare_path}
    res = c.sh("bash", "-euo", "pipefail", "-c", "tether() { echo 'tether must not be used' >&2; exit 99; }\n" + block,
               env=env, check=False)
    assert res.code == 0, res.out + res.err
    assert f"production's tree is {TAG}'s tree" in res.out
    assert "Verification succeeded" in res.out
    assert f"{TAG} provenance verified:" in res.out
    # the same block fails once a byte of the model changed
    model = c.root / "models/fraud-detector/threshold.json"
    model.chmod(0o644)
    model.write_bytes(model.read_bytes().replace(b"0", b"1", 1))
    step3 = [ln for ln in block.splitlines() if ln.startswith("model_signing verify")][0]
    bad = c.sh("bash", "-c", step3, env=env, check=False)
    assert bad.code == 1 and "threshold.json" in bad.err


def test_deploy_refuses_bytes_that_differ_from_a_validly_signed_statement(project_live, tmp_path):
    """A statement signed by the trusted key but naming other bytes (a key holder's mistake or a
    forged build): deploy lists the files, reuses the digests it verified, and switches nothing."""
    from tether.adapters.attestkeys import load_private
    from tether.adapters.attestnotes import add_record
    from tether.adapters.workspace import Workspace
    from tether.commands.attest import _release, _sign, statement_for

    p = project_live
    priv, pub = keypair(tmp_path, "team")
    ws = Workspace(p.root)
    rel, manifest = _release(ws, TAG, None)
    statement = statement_for(ws, rel, manifest)
    forged = next(s for s in statement["subject"] if s["name"].endswith("model.skops"))
    forged["digest"]["sha256"] = "0" * 64
    record = _sign(load_private(priv), statement, manifest["artifact"]["path"], rel.tag_object)
    add_record(ws.git, rel.commit, rel.tag, record)

    target = tmp_path / "serve"
    res = p.tether("deploy", "--env", "production", "--target", str(target), "--require-attestation", str(pub))
    assert res.code == 6, res.err
    assert "the deployed model is not the attested one" in res.err and "model.skops" in res.err
    assert not (target / "current").exists()
    # and tether's own verification says the same, without any deploy
    res = p.tether("attest", TAG, "--verify", "--public-key", str(pub))
    assert res.code == 6 and "model.skops" in res.err


def test_a_host_deploying_from_the_bare_origin_fetches_the_attestations(project_live, tmp_path):
    p = project_live
    priv, pub = keypair(tmp_path, "team")
    p.git("push", "-q", "origin", "production")
    target = tmp_path / "serve"
    clone = target / ".tether" / "repo"  # the host's clone, its DVC remote its own (as test_deploy_target does)
    clone.parent.mkdir(parents=True)
    p.git("clone", "-q", "--no-checkout", str(p.origin), str(clone), cwd=tmp_path)
    (clone / ".dvc").mkdir()
    (clone / ".dvc" / "config.local").write_text(f"['remote \"local\"']\n    url = {p.store}\n")
    res = p.tether("deploy", "--env", "production", "--target", str(target), "--repo", str(p.origin),
                   "--require-attestation", str(pub), cwd=tmp_path)
    assert res.code == 6 and "has no attestation" in res.err and not (target / "current").exists()
    p.ok("attest", TAG, "--key", str(priv), "--push")
    p.ok("deploy", "--env", "production", "--target", str(target), "--repo", str(p.origin),
         "--require-attestation", str(pub), cwd=tmp_path)
    assert current_release(target) == f"releases/{TAG}"


def _require_attestations_in_production(p, tmp_path):
    """The team's key committed under keys/, and dvc.yaml's policy naming it for production
    (not committed); returns (the team's private key, another private key)."""
    import yaml

    priv, pub = keypair(tmp_path, "team")
    other, _ = keypair(tmp_path, "other")
    (p.root / "keys").mkdir()
    shutil.copy(pub, p.root / "keys" / "attest.pub")
    dvc_yaml = yaml.safe_load((p.root / "dvc.yaml").read_text())
    dvc_yaml["artifacts"]["fraud-detector"]["meta"]["tether"]["attestation"] = {
        "key": "keys/attest.pub", "environments": ["production"]}
    (p.root / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    return priv, other


def test_a_committed_policy_makes_promote_and_check_require_attestations(project_live, tmp_path):
    p = project_live
    priv, other = _require_attestations_in_production(p, tmp_path)
    tag2 = threshold_release(p, 0.35)

    res = p.tether("check")
    assert res.code == 6 and f"live release {TAG} is not attested" in res.out + res.err
    promote = ("promote", tag2, "--env", "production", "--approver", "ci", "--reason", "test", "--skip-staging", "test",
               "--allow-regression", "test")
    head = p.git("rev-parse", "production")
    res = p.tether(*promote)
    assert res.code == 5 and "has no attestation" in res.out + res.err
    p.ok("attest", tag2, "--key", str(other))
    res = p.tether(*promote)
    assert res.code == 5 and "not signed by this key" in res.out + res.err
    assert p.git("rev-parse", "production") == head
    p.ok("promote", tag2, "--env", "staging", "--approver", "ci", "--reason", "test", "--allow-regression", "test")

    p.ok("attest", TAG, "--key", str(priv))
    p.ok("check")
    res = p.tether("promote", tag2, "--env", "production", "--approver", "ci", "--reason", "test",
                   "--skip-staging", "test", "--allow-regression", "test")
    assert res.code == 5  # tag2 is attested by the wrong key: still refused


def test_the_pre_receive_hook_takes_an_environment_move_only_with_its_attestation(project_live, tmp_path):
    p = project_live
    priv, other = _require_attestations_in_production(p, tmp_path)
    p.commit_all("require attestations in production")
    p.git("push", "-q", "origin", "main")
    p.ok("hook", "install", str(p.origin))

    def push(*refs: str):
        return p.sh("git", "push", "--porcelain", "origin", *refs, check=False)

    res = push("production")
    assert res.code != 0 and "has no attestation here" in res.out + res.err
    assert p.sh("git", "rev-parse", "--verify", "-q", "production", cwd=p.origin, check=False).out.strip() == ""
    p.ok("attest", TAG, "--key", str(other))
    res = push("production", "refs/notes/tether-attest")
    assert res.code != 0 and "not signed by this key" in res.out + res.err
    p.git("update-ref", "-d", "refs/notes/tether-attest")
    p.ok("attest", TAG, "--key", str(priv))
    res = push("production", "refs/notes/tether-attest")  # the attestation arrives in the same push
    assert res.code == 0, res.out + res.err
    assert p.sh("git", "rev-parse", "production", cwd=p.origin).out.strip() == p.git("rev-parse", "production")
    # on the server too, an attestation is never changed, replaced or removed
    served = p.sh("git", "rev-parse", "refs/notes/tether-attest", cwd=p.origin).out.strip()
    p.git("update-ref", "-d", "refs/notes/tether-attest")
    p.ok("attest", TAG, "--key", str(other))  # a different attestation, made locally
    res = p.sh("git", "push", "--porcelain", "--force", "origin", "refs/notes/tether-attest", check=False)
    assert res.code != 0 and "append-only" in res.out + res.err
    p.git("fetch", "-q", "origin", "+refs/notes/tether-attest:refs/notes/tether-attest")
    note = json.loads(p.git("notes", "--ref=tether-attest", "show", TAG + "^{commit}"))
    note["releases"][TAG]["key"] = "0" * 64
    (tmp_path / "note.json").write_text(json.dumps(note))
    p.git("notes", "--ref=tether-attest", "add", "-f", "-F", str(tmp_path / "note.json"), TAG + "^{commit}")
    res = p.sh("git", "push", "--porcelain", "origin", "refs/notes/tether-attest", check=False)
    assert res.code != 0 and f"changes or removes the attestation of {TAG}" in res.out + res.err
    res = p.sh("git", "push", "--porcelain", "origin", ":refs/notes/tether-attest", check=False)
    assert res.code != 0 and "never removed" in res.out + res.err
    assert p.sh("git", "rev-parse", "refs/notes/tether-attest", cwd=p.origin).out.strip() == served


def test_a_server_that_requires_attestations_has_its_worker_refuse_an_unattested_release(project_live, tmp_path):
    """`serve --require-attestation PUB` hands the key to every worker (TETHER_REQUIRE_ATTESTATION):
    the worker refuses to import a release deployed without a verified attestation, or attested
    by another key, and loads one deployed with `deploy --require-attestation`."""
    p = project_live
    priv, pub = keypair(tmp_path, "team")
    _other, other_pub = keypair(tmp_path, "other")
    plain, attested = tmp_path / "plain", tmp_path / "attested"
    p.ok("deploy", "--env", "production", "--target", str(plain))
    p.ok("attest", TAG, "--key", str(priv))
    p.ok("deploy", "--env", "production", "--target", str(attested), "--require-attestation", str(pub))

    def worker(target: Path, key: Path | None):
        env = {"TETHER_REQUIRE_ATTESTATION": str(key)} if key else {"TETHER_REQUIRE_ATTESTATION": ""}
        return p.tether("worker", "--target", str(target), "--release", str(target / "releases" / TAG), "--once",
                        env=env)

    assert json.loads(worker(plain, None).out.splitlines()[0])["event"] == "ready"  # a server requiring nothing
    res = worker(plain, pub)
    assert res.code == 6 and "carries no attestation" in res.out + res.err
    res = worker(attested, other_pub)
    assert res.code == 6 and "not signed by this key" in res.out + res.err
    res = worker(attested, pub)
    assert res.code == 0, res.out + res.err
    hello = json.loads(res.out.strip().splitlines()[0])
    assert hello["event"] == "ready" and hello["release"] == TAG
