"""Regenerate the README's "Using tether on your own repository" transcript: builds the text
classifier shape (tests/shapes.py) in a temporary directory and runs the commands a new user
would, printing each with its real output. Run: .venv/bin/python docs/walkthrough.py"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shapes import build_textclf_live  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-walk-") as tmp:
        p = build_textclf_live(Path(tmp) / "textclf")
        root = str(p.root)

        def run(*args: str, show: bool = True, env: dict | None = None) -> None:
            res = p.tether(*args, env=env)
            text = (res.err + res.out).replace(tmp, "/tmp/x").rstrip()
            text = re.sub(r"\b[0-9a-f]{12,40}\b", lambda m: m.group(0)[:7] + "…", text)
            if show:
                print(f"$ tether {' '.join(args)}".replace(tmp, "/tmp/x"))
                print(text + (f"\n(exit {res.code})" if res.code else ""))
                print()

        run("release", "--push")
        run("show", "textclf@v1.0.0")
        run("promote", "textclf@v1.0.0", "--to", "staging", "--approver", "ana", "--reason", "first", "--push")
        params = p.root / "params.yaml"
        params.write_text(params.read_text().replace("alpha: 1.0", "alpha: 0.5"))
        p.dvc("repro", "-q")
        p.commit_all("alpha 0.5")
        run("release", "--push")
        run("diff", "textclf@v1.0.0", "textclf@v1.1.0")
        run("promote", "textclf@v1.1.0", "--to", "staging", "--approver", "ana", "--reason", "better", "--push")
        target = os.path.join(tmp, "serving")
        run("deploy", "--env", "staging", "--target", target)
        run("verify", "--target", target)
        run("checkout", "textclf@v1.0.0")
        _ = root


if __name__ == "__main__":
    main()
