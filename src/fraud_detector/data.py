"""The raw data: a seeded synthetic card-transaction stream, or scikit-learn's breast-cancer set.

The stream is realistic where it matters for release safety: heavy class imbalance, skewed
amounts, mixed integer and float features, and fraud patterns that drift from window to window
(so a new data window really does change the model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "is_fraud"


def fraud_stream(window: int, rows: int, fraud_rate: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, window])
    n_fraud = int(rng.binomial(rows, fraud_rate))
    y = np.zeros(rows, dtype=np.int64)
    y[rng.choice(rows, n_fraud, replace=False)] = 1
    f = y == 1
    drift = (window - 1) * 0.15  # fraudsters adapt: bigger, more online, more foreign over time

    def pick(legit, fraud):
        return np.where(f, fraud, legit)

    amount = pick(rng.lognormal(3.4, 0.9, rows), rng.lognormal(3.7 + drift, 1.1, rows))
    hour = pick(rng.normal(14, 5, rows), rng.normal(8 + 2 * drift, 7, rows)).round().astype(np.int64) % 24
    frame = pd.DataFrame({
        "amount": amount.round(2),
        "hour": hour,
        "merchant_category": pick(rng.integers(0, 20, rows),
                                  np.where(rng.random(rows) < 0.5, rng.choice([3, 7, 11, 17, 19], rows),
                                           rng.integers(0, 20, rows))).astype(np.int64),
        "distance_from_home_km": pick(rng.exponential(10, rows), rng.exponential(22 * (1 + drift), rows)).round(3),
        "card_age_days": pick(rng.integers(30, 3650, rows), rng.integers(1, 2400, rows)).astype(np.int64),
        "txn_count_24h": pick(rng.poisson(2.5, rows), rng.poisson(3.5 + 2 * drift, rows)).astype(np.int64),
        "foreign": (rng.random(rows) < pick(0.06, 0.18 + drift / 2)).astype(np.int64),
        "online": (rng.random(rows) < pick(0.4, 0.6 + drift / 4)).astype(np.int64),
        "amount_to_avg_ratio": pick(rng.lognormal(0, 0.5, rows), rng.lognormal(0.4 + drift, 0.6, rows)).round(4),
        "device_risk_score": pick(rng.beta(2, 6, rows), rng.beta(3, 5 - min(drift, 2), rows)).round(4),
    })
    # Some legitimate transactions look like fraud and vice versa: the problem is not trivial.
    noise = rng.random(rows) < 0.08
    frame.loc[noise, "device_risk_score"] = rng.beta(3, 5, int(noise.sum())).round(4)
    frame[TARGET] = y
    return frame


def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    ds = load_breast_cancer(as_frame=True)
    frame = ds.data.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    # Malignant is the positive class, like fraud: 0 in sklearn's encoding.
    frame[TARGET] = (ds.target == 0).astype(np.int64)
    return frame


def load(cfg: dict, seed: int) -> pd.DataFrame:
    if cfg["name"] == "fraud_stream":
        return fraud_stream(int(cfg["window"]), int(cfg["rows"]), float(cfg["fraud_rate"]), seed)
    if cfg["name"] == "breast_cancer":
        return breast_cancer()
    raise SystemExit(f"unknown data source {cfg['name']!r} (fraud_stream or breast_cancer)")
