"""Stage `split`: the frozen train and eval sets (stratified, seeded)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from fraud_detector.config import load_params
from fraud_detector.data import TARGET

RAW = Path("data/raw/transactions.parquet")
TRAIN = Path("data/split/train.parquet")
EVAL = Path("data/split/eval.parquet")


def main() -> None:
    params = load_params()
    frame = pd.read_parquet(RAW)
    train, evaluation = train_test_split(
        frame, test_size=float(params["data"]["eval_fraction"]), stratify=frame[TARGET],
        random_state=int(params["seed"]),
    )
    TRAIN.parent.mkdir(parents=True, exist_ok=True)
    train.reset_index(drop=True).to_parquet(TRAIN, index=False)
    evaluation.reset_index(drop=True).to_parquet(EVAL, index=False)
    print(f"split: {len(train)} train, {len(evaluation)} eval")


if __name__ == "__main__":
    main()
