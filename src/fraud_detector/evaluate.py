"""Stage `evaluate`: metrics on the frozen eval set at the decision threshold, the threshold
itself (with where it came from), and a digest of the eval predictions, so a smoke test can
prove the shipped bundle reproduces them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score, roc_auc_score

from fraud_detector.config import load_params, write_json
from fraud_detector.data import TARGET

EVAL = Path("data/split/eval.parquet")
MODEL = Path("models/fraud-detector/model.skops")
THRESHOLD = Path("models/fraud-detector/threshold.json")
METRICS = Path("models/fraud-detector/metrics.json")


def predictions_digest(scores) -> str:
    """The bundle format's digest of eval scores (tether.bundle computes the same)."""
    return hashlib.sha256(np.round(np.asarray(scores, dtype="<f8"), 10).tobytes()).hexdigest()


def choose_threshold(cfg: dict, y, scores) -> tuple[float, str]:
    strategy = cfg.get("strategy", "fixed")
    if strategy == "fixed":
        return float(cfg["threshold"]), "evaluate.threshold (fixed)"
    precision, recall, thresholds = precision_recall_curve(y, scores)
    if strategy == "best_f1":
        f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
        return round(float(thresholds[int(np.argmax(f1))]), 6), "best F1 on the eval set"
    if strategy == "target_recall":
        target = float(cfg["target_recall"])
        ok = np.flatnonzero(recall[:-1] >= target)
        return round(float(thresholds[ok[-1]] if len(ok) else thresholds[0]), 6), f"recall >= {target} on the eval set"
    raise SystemExit(f"unknown threshold strategy {strategy!r} (fixed, best_f1, target_recall)")


def trusted_types(path: Path) -> list[str]:
    # Our own file, just written by `train`; tether's loader has the explicit allowlist.
    return sio.get_untrusted_types(file=path)


def main() -> None:
    params = load_params()
    frame = pd.read_parquet(EVAL)
    features = [c for c in frame.columns if c != TARGET]
    model = sio.load(MODEL, trusted=trusted_types(MODEL))
    scores = model.predict_proba(frame[features])[:, 1]
    y = frame[TARGET].to_numpy()
    threshold, source = choose_threshold(params["evaluate"], y, scores)
    decisions = scores >= threshold
    metrics = {
        "roc_auc": round(float(roc_auc_score(y, scores)), 6),
        "precision": round(float(precision_score(y, decisions, zero_division=0)), 6),
        "recall": round(float(recall_score(y, decisions, zero_division=0)), 6),
        "f1": round(float(f1_score(y, decisions, zero_division=0)), 6),
        "threshold": threshold,
        "n_eval": int(len(y)),
        "positives": int(y.sum()),
        "predictions_sha256": predictions_digest(scores),
    }
    write_json(THRESHOLD, {"value": threshold, "source": source})
    write_json(METRICS, metrics)
    print("evaluate: " + " ".join(f"{k}={v}" for k, v in metrics.items() if k != "predictions_sha256"))


if __name__ == "__main__":
    main()
