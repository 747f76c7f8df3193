"""The verifying loader: digests first, skops with an explicit trusted-type list, and the bundle
reproduces what evaluate recorded."""

import io
import json
import shutil
import zipfile

import pandas as pd
import pytest

from tether.runtime.bundle import BundleInputError, load_bundle, predictions_digest, smoke_test, verify_bundle
from tether.digest import sha256_file
from tether.errors import IntegrityError


@pytest.fixture
def bundle_dir(template, tmp_path):
    d = tmp_path / "bundle"
    shutil.copytree(template.root / "models/fraud-detector", d)
    for f in d.iterdir():
        f.chmod(0o644)
    return d


def eval_frame(template):
    return pd.read_parquet(template.root / "data/split/eval.parquet")


def test_bundle_reproduces_what_evaluate_recorded(bundle_dir, template):
    b = load_bundle(bundle_dir)
    frame = eval_frame(template)
    scores, decisions = b.predict(frame[b.features])
    assert predictions_digest(scores) == b.metrics["predictions_sha256"]
    assert (decisions == (scores >= b.threshold)).all() and b.threshold == 0.3
    got = smoke_test(b, frame)
    assert got["roc_auc"] == pytest.approx(b.metrics["roc_auc"], abs=1e-6)


def test_a_tampered_weights_file_is_refused(bundle_dir):
    model = bundle_dir / "model.skops"
    data = bytearray(model.read_bytes())
    data[100] ^= 1
    model.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.skops"):
        load_bundle(bundle_dir)


def test_a_tampered_threshold_is_refused(bundle_dir):
    (bundle_dir / "threshold.json").write_text('{"value": 0.01, "source": "attacker"}\n')
    with pytest.raises(IntegrityError, match="threshold.json"):
        verify_bundle(bundle_dir)


def _rehash(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    for name in manifest["files"]:
        p = bundle_dir / name
        manifest["files"][name] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))


def test_an_untrusted_type_is_refused_even_with_valid_digests(bundle_dir):
    """A skops file can name any importable callable; digests that match do not make it safe."""
    model = bundle_dir / "model.skops"
    with zipfile.ZipFile(model) as z:
        files = {n: z.read(n) for n in z.namelist()}
    schema = json.loads(files["schema.json"])
    text = json.dumps(schema)
    # Swap the forest's tree type for os.system: what an attacker would do.
    assert "sklearn.tree._tree" in text
    files["schema.json"] = text.replace('"__module__": "sklearn.tree._tree"', '"__module__": "os"', 1) \
        .replace('"__class__": "Tree"', '"__class__": "system"', 1).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    model.write_bytes(out.getvalue())
    _rehash(bundle_dir)
    verify_bundle(bundle_dir)  # digests are fine ...
    with pytest.raises(IntegrityError, match="trusted") as exc:
        load_bundle(bundle_dir)  # ... the type check is what refuses it
    assert "os.system" in str(exc.value)


def test_a_pickle_renamed_to_skops_is_refused(bundle_dir):
    import pickle

    (bundle_dir / "model.skops").write_bytes(pickle.dumps({"not": "skops"}))
    _rehash(bundle_dir)
    with pytest.raises(IntegrityError):
        load_bundle(bundle_dir)


def test_smoke_test_fails_when_predictions_differ(bundle_dir, template):
    metrics = json.loads((bundle_dir / "metrics.json").read_text())
    metrics["predictions_sha256"] = "0" * 64
    (bundle_dir / "metrics.json").write_text(json.dumps(metrics))
    _rehash(bundle_dir)
    with pytest.raises(IntegrityError, match="do not reproduce"):
        smoke_test(load_bundle(bundle_dir), eval_frame(template))


@pytest.mark.parametrize(
    "records,problem",
    [
        ([{"amount": 1.0}], "hour: missing"),
        ([{"amount": "x"}], "amount: must be a finite number"),
        ([{"amount": float("nan")}], "amount: must be a finite number"),
        ([{"amount": True}], "amount: must be a finite number"),
        ([], "non-empty"),
        (["row"], "not an object"),
    ],
)
def test_input_validation_names_fields(bundle_dir, records, problem):
    b = load_bundle(bundle_dir)
    with pytest.raises(BundleInputError) as exc:
        b.validate(records)
    assert any(problem in f for f in exc.value.fields), exc.value.fields
