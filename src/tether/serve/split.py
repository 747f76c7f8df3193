"""`tether serve --canary-target`: which arm a request lands on, at the weight deploy wrote
beside the canary's `current` (DIR/weight.json)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.serve.supervisor import Live, Supervisor

log = logging.getLogger("tether.serve")


def to_canary(key: str | None, weight: int, rand=None) -> bool:
    """Deterministic by key: SHA-256 of the key into 10,000 slots, the first weight % of them
    the canary's (a key keeps its arm while the weight rises). No key: at random."""
    if weight <= 0:
        return False
    if weight >= 100:
        return True
    if key is None:
        import random

        return (rand or random.random)() * 100 < weight
    import hashlib

    slot = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 10_000
    return slot < weight * 100


class Split:
    """The canary's weight as deploy wrote it (DIR/weight.json), re-read every interval. It
    applies only to the release it names: a canary worker for any other release gets nothing."""

    def __init__(self) -> None:
        self.release: str | None = None
        self.weight = 0

    def weight_for(self, live: Live | None) -> int:
        return self.weight if live is not None and live.worker.name == self.release else 0

    def read(self, can: Supervisor) -> None:
        from tether.servedir.weight import read_weight_file

        got = read_weight_file(can.target)
        self.release, self.weight = got if got else (None, 0)

    def watch(self, can: Supervisor, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.read(can)
            except Exception as exc:  # never let the watcher die
                log.exception("weight watcher: %s", exc)
            stop.wait(interval)


def canary_status(can: Supervisor, split: Split) -> dict:
    live = can.serving()
    return {"release": live.worker.name if live else None, "weight": split.weight_for(live),
            "starting": can.starting, "error": can.reason()}
