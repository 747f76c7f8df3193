"""An ONNX model (the reference pipeline converted with skl2onnx) is served by the built-in
loader, with no entrypoint, and its smoke gate reproduces the ONNX predictions."""

from __future__ import annotations

import textwrap

from servehelp import OPS, call, serve, serving
from test_serve import RECORD

STAGE = """\
  onnx:
    cmd: PYTHONPATH=src python src/fraud_detector/to_onnx.py
    deps:
      - data/split/eval.parquet
      - models/fraud-detector/model.skops
      - models/fraud-detector/feature_schema.json
      - models/fraud-detector/threshold.json
      - src/fraud_detector/to_onnx.py
    outs:
      - models/fraud-onnx/model.onnx
      - models/fraud-onnx/feature_schema.json
      - models/fraud-onnx/threshold.json
    metrics:
      - models/fraud-onnx/metrics.json
"""

ARTIFACT = """\
  fraud-onnx:
    path: models/fraud-onnx
    type: model
    meta:
      tether:
        eval_data: data/split/eval.parquet
"""

CONVERT = '''\
    """Stage `onnx`: the skops pipeline as ONNX (one float input per feature), and the metrics
    and predictions digest of the ONNX model itself on the frozen eval slice."""
    import hashlib
    import json
    import shutil
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import skops.io as sio
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.metrics import roc_auc_score

    src, out = Path("models/fraud-detector"), Path("models/fraud-onnx")
    out.mkdir(parents=True, exist_ok=True)
    pipe = sio.load(src / "model.skops", trusted=sio.get_untrusted_types(file=src / "model.skops"))
    schema = json.loads((src / "feature_schema.json").read_text())
    names = [f["name"] for f in schema["features"]]
    clf = pipe.steps[-1][1]
    onx = to_onnx(pipe, initial_types=[(n, FloatTensorType([None, 1])) for n in names],
                  options={id(clf): {"zipmap": False}}, target_opset=17)
    (out / "model.onnx").write_bytes(onx.SerializeToString())
    shutil.copy(src / "feature_schema.json", out / "feature_schema.json")
    shutil.copy(src / "threshold.json", out / "threshold.json")

    import onnxruntime as ort

    opts = ort.SessionOptions()  # as tether's ONNX loader runs it: one thread, the same float sums
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(out / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    frame = pd.read_parquet("data/split/eval.parquet")
    (probs,) = sess.run(["probabilities"], {n: frame[[n]].to_numpy("float32") for n in names})
    scores = np.asarray(probs, dtype="f8")[:, -1]
    digest = hashlib.sha256(np.round(np.asarray(scores, dtype="<f8"), 10).tobytes()).hexdigest()
    (out / "metrics.json").write_text(json.dumps({"roc_auc": float(roc_auc_score(frame[schema["target"]], scores)),
                                                  "predictions_sha256": digest}) + "\\n")
'''


def test_an_onnx_model_is_served_without_an_entrypoint(project, tmp_path):
    p = project
    dvc_yaml = p.root / "dvc.yaml"
    text = dvc_yaml.read_text()
    text = text.replace("\nartifacts:\n", "\n" + STAGE + "\nartifacts:\n") + ARTIFACT
    dvc_yaml.write_text(text)
    (p.root / "src/fraud_detector/to_onnx.py").write_text(textwrap.dedent(CONVERT))
    p.dvc("repro", "-q", "onnx")
    p.commit_all("the fraud detector as ONNX")
    tag = p.ok("release", "fraud-onnx", "--push", "--json").json()["tag"]
    assert tag == "fraud-onnx@v1.0.0"
    out = p.ok("promote", tag, "--env", "production", *OPS, "--skip-staging", "test").out
    assert "gate smoke: ok - onnx reproduces its eval predictions" in out, out
    target = tmp_path / "serving"
    with serve(p, target, tmp_path / "serve.log") as url:
        p.ok("deploy", "--env", "production", "--target", str(target), "--model", "fraud-onnx")
        info = serving(url, tag)
        assert info["loader"] == "onnx" and info["threshold"] == 0.3
        code, body, headers = call(url, "/predict", {"records": [RECORD, {**RECORD, "amount": 5.0}]})
        assert code == 200, body
        assert headers["x-tether-release"] == tag and len(body["scores"]) == 2
        assert all(0 <= s <= 1 for s in body["scores"])
        assert body["decisions"] == [s >= 0.3 for s in body["scores"]]
        # the same schema validation as the skops bundle: its feature_schema.json
        code, body, _ = call(url, "/predict", {"records": [{**RECORD, "hour": 1e19}]})
        assert code == 422 and "hour" in str(body)
