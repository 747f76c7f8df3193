"""The preprocessing, fitted inside the model pipeline so weights and preprocessing travel as
one file: `standard` scales; `robust` clips outliers and maps features to normal quantiles."""

from __future__ import annotations

from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import QuantileTransformer, RobustScaler, StandardScaler


def build(cfg: dict, features: list[str], seed: int):
    if cfg["name"] == "standard":
        return ColumnTransformer([("scale", StandardScaler(), features)], verbose_feature_names_out=False)
    if cfg["name"] == "robust":
        q = float(cfg.get("clip_quantile", 0.01))
        steps = Pipeline([
            ("clip", RobustScaler(quantile_range=(100 * q, 100 * (1 - q)))),
            ("quantile", QuantileTransformer(n_quantiles=200, output_distribution="normal", random_state=seed)),
        ])
        return ColumnTransformer([("robust", steps, features)], verbose_feature_names_out=False)
    raise SystemExit(f"unknown preprocess {cfg['name']!r} (standard or robust)")
