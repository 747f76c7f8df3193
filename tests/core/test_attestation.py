"""The attestation's pure core: the statement against the vendored in-toto Statement v1 and SLSA
Provenance v1 schemas (tests/schemas/), DSSE's PAE, and the model-signing statement's digests."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from tether.core import attestation as at
from tether.core import dsse

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
H = "ab" * 32


def _schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


def validate(statement: dict) -> None:
    jsonschema.Draft202012Validator(_schema("in-toto-statement-v1.schema.json")).validate(statement)
    assert statement["predicateType"] == at.PROVENANCE_TYPE
    jsonschema.Draft202012Validator(_schema("slsa-provenance-v1.schema.json")).validate(statement["predicate"])


MANIFEST = {
    "model": "fraud-detector", "version": "1.2.0", "commit": "c" * 40, "tree": "d" * 40,
    "artifact": {"path": "models/fraud-detector", "type": "model"},
    "stages": {"train": "python -m train", "evaluate": "python -m evaluate"},
    "components": {
        "weights": [],
        "data": [{"path": "data/split/train.parquet", "md5": "1" * 32, "sha256": "2" * 64, "size": 3, "stage": "split"},
                 {"path": "data/raw", "md5": "3" * 32 + ".dir", "sha256": "4" * 64, "size": 9, "stage": None},
                 {"path": "s3://bucket/x.csv", "md5": "5" * 32, "sha256": None, "size": None, "stage": None,
                  "external": True}],
        "code": [{"path": "src/train.py", "type": "blob", "git_id": "6" * 40},
                 {"path": "src/pkg", "type": "tree", "git_id": "7" * 40},
                 {"path": "src/gone.py", "type": "missing", "git_id": None}],
        "params": {"path": "params.yaml", "sha256": "8" * 64, "values": {"seed": 1}, "used": {"params.yaml": {"seed": 1}},
                   "config": {"dir": "conf", "tree": "9" * 40}},
        "threshold": {"value": 0.42, "source": "models/fraud-detector/threshold.json"},
    },
    "metrics": {"auc": 0.93, "recall": 0.8},
    "predictions_sha256": "e" * 64,
}
FACTS = at.ReleaseFacts("fraud-detector@v1.2.0", "f" * 40, "a" * 64)
SUBJECTS = at.subjects({"models/fraud-detector/model.skops": H, "models/fraud-detector/threshold.json": "cd" * 32})


def test_the_statement_validates_against_in_toto_and_slsa_v1_and_names_every_part_of_the_tuple():
    st = at.build_statement(SUBJECTS, MANIFEST, FACTS)
    validate(st)
    deps = {d["name"]: d for d in st["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["source"]["digest"] == {"gitCommit": "c" * 40, "gitTree": "d" * 40}
    assert deps["data/split/train.parquet"]["digest"] == {"md5": "1" * 32, "sha256": "2" * 64}
    assert deps["data/raw"]["digest"] == {"md5": "3" * 32, "dirHash": "4" * 64}
    assert deps["s3://bucket/x.csv"]["annotations"]["dvc"]["external"] is True
    assert deps["params.yaml"]["digest"] == {"sha256": "8" * 64}
    assert deps["conf"]["digest"] == {"gitTree": "9" * 40}
    assert deps["src/train.py"]["digest"] == {"gitBlob": "6" * 40} and deps["src/pkg"]["digest"] == {"gitTree": "7" * 40}
    assert "src/gone.py" not in deps
    internal = st["predicate"]["buildDefinition"]["internalParameters"]
    assert internal["threshold"]["value"] == 0.42 and internal["metrics"]["auc"] == 0.93
    assert internal["predictionsSha256"] == "e" * 64
    run = st["predicate"]["runDetails"]
    assert run["builder"]["builderDependencies"] == [{"name": "dvc.lock", "digest": {"sha256": "a" * 64}}]
    assert {b["name"] for b in run["byproducts"]} == {"metrics", "eval-predictions"}
    assert [s["name"] for s in st["subject"]] == ["models/fraud-detector/model.skops",
                                                  "models/fraud-detector/threshold.json"]


def test_the_schemas_reject_what_the_specs_forbid():
    st = at.build_statement(SUBJECTS, MANIFEST, FACTS)
    for breakage in (lambda s: s["subject"][0]["digest"].update(sha256="XYZ"),
                     lambda s: s.update(subject=[]),
                     lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"),
                     lambda s: s["predicate"]["buildDefinition"].pop("buildType"),
                     lambda s: s["predicate"]["runDetails"]["builder"].pop("id"),
                     lambda s: s["predicate"]["buildDefinition"]["resolvedDependencies"].append({"name": "x"})):
        bad = copy.deepcopy(st)
        breakage(bad)
        with pytest.raises(jsonschema.ValidationError):
            validate(bad)


def test_the_statement_is_deterministic_and_canonical():
    a = at.canonical_json(at.build_statement(SUBJECTS, MANIFEST, FACTS))
    b = at.canonical_json(at.build_statement(list(reversed(SUBJECTS)), copy.deepcopy(MANIFEST), FACTS))
    assert a != b  # subject order is the caller's: `subjects()` sorts
    assert at.canonical_json(at.build_statement(at.subjects(at.statement_subjects(json.loads(a))), MANIFEST, FACTS)) == a
    assert a.startswith(b'{"_type":"https://in-toto.io/Statement/v1","predicate":{') and b'", "' not in a


def test_subjects_refuse_a_malformed_digest_and_a_statement_without_subjects():
    with pytest.raises(ValueError):
        at.subjects({"m/model.bin": "not-hex"})
    with pytest.raises(ValueError):
        at.build_statement([], MANIFEST, FACTS)
    with pytest.raises(ValueError):
        at.statement_subjects({"subject": [{"name": "a", "digest": {"sha256": H}}, {"name": "a", "digest": {"sha256": H}}]})


def test_compare_subjects_names_a_changed_an_added_and_a_missing_file():
    want = {"m/a": H, "m/b": H}
    got = {"m/a": "cd" * 32, "m/c": H}
    problems = at.compare_subjects(want, got)
    assert any(p.startswith("m/c: not in the attested") for p in problems)
    assert "m/b: missing" in problems
    assert any(p.startswith("m/a: sha256") for p in problems)
    assert at.compare_subjects(want, dict(want)) == []


def test_artifact_files_leave_out_only_gits_metadata_at_the_top():
    names = at.artifact_files("models/m", [".gitignore", "model.bin", "sub/.gitignore", ".git/x", "B"])
    assert names == ["models/m/B", "models/m/model.bin", "models/m/sub/.gitignore"]


def test_pae_is_dsses_example():
    # secure-systems-lab/dsse protocol.md, "Test vectors"
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert dsse.pae("t", "é".encode()) == b"DSSEv1 1 t 2 " + "é".encode()


def test_the_model_signing_statement_digests_the_resource_digests_in_order():
    files = {"b/c": "11" * 32, "a": "22" * 32}
    st = dsse.model_signing_statement("m", files)
    assert [r["name"] for r in st["predicate"]["resources"]] == ["a", "b/c"]
    root = hashlib.sha256(bytes.fromhex("22" * 32) + bytes.fromhex("11" * 32)).hexdigest()
    assert st["subject"] == [{"name": "m", "digest": {"sha256": root}}]
    assert dsse.model_files("models/m", at.subjects({"models/m/x": H, "models/mx/y": H})) == {"x": H}
    assert dsse.model_files("models/m.bin", at.subjects({"models/m.bin": H})) == {".": H}


def test_envelopes_and_bundles_open_only_as_written():
    env = dsse.envelope(b'{"_type":"https://in-toto.io/Statement/v1"}', b"sig", "kid")
    assert dsse.open_envelope(env) == (b'{"_type":"https://in-toto.io/Statement/v1"}', b"sig", "kid")
    bun = dsse.bundle(env, "h" * 64)
    assert bun["dsseEnvelope"]["signatures"] == [{"sig": base64.b64encode(b"sig").decode(), "keyid": ""}]
    assert dsse.open_bundle(bun)[1] == "h" * 64
    for bad in ({**env, "payloadType": "text/plain"}, {**env, "signatures": []}, {**env, "payload": "%%%"},
                {**env, "signatures": [env["signatures"][0]] * 2}, [], None):
        with pytest.raises(dsse.EnvelopeError):
            dsse.open_envelope(bad)
    with pytest.raises(dsse.EnvelopeError):
        dsse.payload_statement(b'{"_type": "other"}')
    with pytest.raises(dsse.EnvelopeError):
        dsse.open_bundle({**bun, "mediaType": "x"})
