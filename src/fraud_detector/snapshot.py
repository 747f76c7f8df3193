"""Stage `snapshot`: the raw slice for the configured window, frozen as parquet."""

from __future__ import annotations

from pathlib import Path

from fraud_detector.config import load_params
from fraud_detector.data import load

OUT = Path("data/raw/transactions.parquet")


def main() -> None:
    params = load_params()
    frame = load(params["data"], int(params["seed"]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(OUT, index=False)
    print(f"snapshot: {len(frame)} rows, {int(frame['is_fraud'].sum())} positive -> {OUT}")


if __name__ == "__main__":
    main()
