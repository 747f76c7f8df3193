"""The smoke test: the release, materialised on its own, reproduces what evaluate recorded.

It runs the model through exactly the path `tether serve` runs it: a worker process started in
the materialised release, which verifies it, loads it by its entrypoint or built-in loader, and
predicts the frozen eval slice. The predictions digest (`predictions_sha256` in the release's
metrics: SHA-256 of the scores as little-endian float64 rounded to 10 decimals) and the metrics
it can recompute must match what the release recorded.

This module is what runs inside the worker (`check`); promote's gate, which materialises the
release and starts that worker, is runtime/smoke_gate.py, and which file is the eval slice is
core/evalslice.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.errors import GateFailed, IntegrityError
from tether.extras import require

BINARY_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def read_table(path: Path):
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True)
    if path.suffix == ".json":
        return pd.read_json(path)
    return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")


def check(served, root: Path, manifest: dict, eval_rel: str, sink: list | None = None) -> str:
    """Predict the eval slice with `served` (a loaders.Served) and match the record. GateFailed
    names what does not reproduce. `sink` receives the eval scores once their digest matches the
    recorded one (the canary guard's reference distribution)."""
    require("sklearn", "the smoke test (it reads the eval slice with pandas and recomputes the metrics)")
    if served.loader == "skops":
        from tether.runtime.bundle import smoke_test

        try:
            result = smoke_test(served.bundle, read_table(root / eval_rel), sink)
        except IntegrityError as exc:
            raise GateFailed(exc.message, hint=exc.hint) from None
        return f"bundle reproduces its eval predictions and metrics ({_fmt(result)})"
    return _generic(served, root / eval_rel, manifest, sink)


def _generic(served, path: Path, manifest: dict, sink: list | None = None) -> str:
    import numpy as np

    from tether.runtime.bundle import METRIC_TOLERANCE, predictions_digest

    recorded = dict(manifest.get("metrics") or {})
    want = recorded.get("predictions_sha256")
    if not want:
        raise GateFailed(f"{manifest['model']} records no predictions_sha256 in its metrics: nothing to reproduce",
                         hint="have the evaluate stage write predictions_sha256 (docs/serving.md), or set "
                              "meta.tether.smoke: false")
    frame = read_table(path)
    target = (served.schema or {}).get("target") or next(
        (c for c in ("label", "target", "y") if c in frame.columns), None)
    names = [f["name"] for f in served.schema["features"]] if served.schema else \
        [c for c in frame.columns if c != target]
    records = frame[names].to_dict("records")
    preds = served.predict(records)
    try:
        scores = np.asarray([p["score"] for p in preds], dtype="f8")
    except (KeyError, TypeError, ValueError):
        raise GateFailed("the model's predictions carry no numeric `score`: the smoke test compares scores") from None
    digest = predictions_digest(scores)
    if digest != want:
        raise GateFailed(f"the release's eval predictions do not reproduce (digest {digest[:12]}, recorded {str(want)[:12]})",
                         hint="weights, preprocessing code or runtime differ from what evaluate ran")
    if sink is not None:
        sink.extend(float(s) for s in scores)
    got: dict[str, Any] = {"n": len(scores), "predictions_sha256": digest[:12]}
    if target is not None and all(isinstance(p.get("decision"), bool) for p in preds):
        from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

        y = frame[target].to_numpy()
        labels = sorted(set(y.tolist()), key=str)
        if len(labels) <= 2:
            positive = labels[-1]
            y01 = np.asarray([v == positive for v in y])
            dec = np.asarray([p["decision"] for p in preds])
            fns = {"accuracy": lambda: accuracy_score(y01, dec), "precision": lambda: precision_score(y01, dec, zero_division=0),
                   "recall": lambda: recall_score(y01, dec, zero_division=0), "f1": lambda: f1_score(y01, dec, zero_division=0),
                   "roc_auc": lambda: roc_auc_score(y01, scores)}
            off = []
            for k in BINARY_METRICS:
                if isinstance(recorded.get(k), (int, float)):
                    got[k] = float(fns[k]())
                    if abs(got[k] - float(recorded[k])) > METRIC_TOLERANCE:
                        off.append(f"{k} {got[k]:.6f} vs recorded {recorded[k]}")
            if off:
                raise GateFailed("the release's eval metrics do not reproduce: " + ", ".join(off))
    return f"{served.loader} reproduces its eval predictions and metrics ({_fmt(got)})"


def _fmt(result) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in list(result.items())[:4])
    return str(result)
