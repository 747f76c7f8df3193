"""A canary project (the text classifier served by its own entrypoint, with a canary environment
in front of production) and a bounded traffic loop against a real `tether serve`."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

from project import Project
from servehelp import call
from textserve import build_textserve

GUARD = """\
        environments: [canary, production]
        canaries: {canary: production}
        guard:
          interval: 0.1
          min_samples: 40
          failed_checks: 1
          steps: [10, 25, 50, 100]
          max_error_rate: 0.01
          error_floor: 0.05     # a test's canary sees no errors: 60 requests show it under 5 %
          max_p95_latency: 5.0
          max_psi: 0.5
          max_ks: 0.35
"""

# the serving code, failing on some inputs ("!!" in the text): what a bad canary does live
FAILS = ('        if any("!!" in r["text"] for r in records):\n'
         '            raise RuntimeError("the new tokenizer crashes on punctuation runs")\n')


def build_canary_project(base: Path) -> Project:
    p = build_textserve(base)
    dvc = (p.root / "dvc.yaml").read_text()
    dvc = dvc.replace("        eval_data: data/eval.csv\n", "        eval_data: data/eval.csv\n" + GUARD)
    (p.root / "dvc.yaml").write_text(dvc)
    p.commit_all("canary in front of production")
    return p


def release(p: Project, message: str) -> str:
    p.dvc("repro", "-q")
    p.commit_all(message)
    return p.ok("release", "--push", "--json").json()["tag"]


def make_failing(p: Project) -> None:
    path = p.root / "src/serve.py"
    head = "    def predict(self, records):\n"
    path.write_text(path.read_text().replace(head, head + FAILS))


def make_shifted(p: Project) -> None:
    """A broken preprocessing change in the serving code: the text reversed before the
    training-time featurisation, so no token is in the vocabulary and every score falls to the
    prior. It runs without an error, and its own evaluate stage (which runs the serving code)
    records the shifted scores."""
    path = p.root / "src/serve.py"
    path.write_text(path.read_text().replace(SERVE_TOKENS, SERVE_TOKENS.replace("(text)", "(text[::-1])")))


SERVE_TOKENS = "toks = featurize.tokens(text)"


def set_alpha(p: Project, alpha: float) -> None:
    path = p.root / "params.yaml"
    path.write_text(path.read_text().replace("alpha: 1.0", f"alpha: {alpha}"))


def texts(p: Project) -> list[str]:
    """The eval slice's texts (so live scores look like the recorded eval scores), a tenth of
    them with a punctuation run the failing canary chokes on."""
    rows = [r["text"] for r in csv.DictReader((p.root / "data/eval.csv").open())]
    return [t + " !!" if i % 10 == 3 else t for i, t in enumerate(rows)]


class Traffic:
    """Requests with keys user-0, user-1, … from a background thread, until stopped or `limit`."""

    def __init__(self, url: str, pool: list[str], limit: int = 20000) -> None:
        self.url, self.pool, self.limit = url, pool, limit
        self.stop = threading.Event()
        self.answers: list[tuple[str, str, int]] = []  # (key, release, status)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set() and i < self.limit:
            key = f"user-{i % 500}"
            code, _body, headers = call(self.url, "/predict", {"key": key, "records": [{"text": self.pool[i % len(self.pool)]}]})
            self.answers.append((key, headers.get("x-tether-release", ""), code))
            i += 1

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(30)
