"""Regenerate the transcript of docs/own-repository.md (using tether on your own repository):
builds the text classifier shape (tests/helpers/shapes.py) in a temporary directory and runs the commands a new user
would, printing each with its real output. Run: .venv/bin/python docs/walkthrough.py
(`… flows` for "Releases made any way", `… experiment` for "From a DVC experiment to a release")."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("tests", "tests/helpers", "src")]
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
        run("promote", "textclf@v1.0.0", "--env", "staging", "--approver", "ana", "--reason", "first", "--push")
        params = p.root / "params.yaml"
        params.write_text(params.read_text().replace("alpha: 1.0", "alpha: 0.5"))
        p.dvc("repro", "-q")
        p.commit_all("alpha 0.5")
        run("release", "--push")
        run("diff", "textclf@v1.0.0", "textclf@v1.1.0")
        run("promote", "textclf@v1.1.0", "--env", "staging", "--approver", "ana", "--reason", "better", "--push")
        target = os.path.join(tmp, "serving")
        run("deploy", "--env", "staging", "--target", target)
        run("verify", "--target", target)
        run("checkout", "textclf@v1.0.0")
        _ = root


def flows() -> None:
    """docs/workflows.md's "Releases made any way" transcript: a plain `git tag` release, `gto`
    reading tether's moves and tether reading gto's."""
    with tempfile.TemporaryDirectory(prefix="tether-flows-") as tmp:
        p = build_textclf_live(Path(tmp) / "textclf")
        gto = os.path.join(os.path.dirname(sys.executable), "gto")

        def show(cmd: str, res) -> None:
            text = (res.out + res.err).replace(tmp, "/tmp/x").rstrip()
            text = re.sub(r"\b[0-9a-f]{12,40}\b", lambda m: m.group(0)[:7] + "…", text)
            text = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?", "2026-11-25 09:00", text)
            print(f"$ {cmd}")
            print(text + (f"\n(exit {res.code})" if res.code else ""))
            print()

        def tether(*args: str) -> None:
            show("tether " + " ".join(a if " " not in a else repr(a) for a in args), p.tether(*args))

        def sh(*args: str) -> None:
            show(" ".join(a if " " not in a else f'"{a}"' for a in args).replace(gto, "gto")
                 .replace(os.path.join(os.path.dirname(sys.executable), "dvc"), "dvc"),
                 p.sh(*args, check=False))

        sh("git", "tag", "-a", "textclf@v1.0.0", "-m", "first model, tagged by hand")
        sh("git", "push", "-q", "origin", "textclf@v1.0.0")
        tether("check")
        sh(os.path.join(os.path.dirname(sys.executable), "dvc"), "push", "-q")
        tether("check")
        tether("list")
        tether("promote", "textclf@v1.0.0", "--env", "staging", "--approver", "ana", "--reason", "hand tag", "--push")
        sh(gto, "show", "textclf")
        sh(gto, "assign", "textclf", "--version", "v1.0.0", "--stage", "prod")
        tether("status")
        tether("history", "--env", "prod")


def experiment() -> None:
    """docs/workflows.md's "From a DVC experiment to a release" transcript: the reference project,
    `dvc exp run -S …`, the refusal, `tether conf apply`, the release."""
    from project import build_template

    with tempfile.TemporaryDirectory(prefix="tether-exp-") as tmp:
        os.environ["HOME"] = tmp  # the project's git and DVC read no configuration of the host
        Path(tmp, ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
        p = build_template(Path(tmp) / "fraud")
        dvc = os.path.join(os.path.dirname(sys.executable), "dvc")

        def show(cmd: str, res, keep=None) -> None:
            text = (res.err + res.out).replace(tmp, "/tmp/x").rstrip()
            text = re.sub(r"\b[0-9a-f]{12,40}\b", lambda m: m.group(0)[:7] + "…", text)
            if keep:
                text = "\n".join(ln for ln in text.splitlines() if keep(ln)) + "\n…"
            print(f"$ {cmd}")
            print(text + (f"\n(exit {res.code})" if res.code else ""))
            print()

        def tether(*args: str) -> None:
            show("tether " + " ".join(a if " " not in a else repr(a) for a in args), p.tether(*args))

        def sh(*args: str, keep=None) -> None:
            show(" ".join(a if " " not in a else f'"{a}"' for a in args).replace(dvc, "dvc"),
                 p.sh(*args, check=False), keep)

        sh(dvc, "exp", "run", "-S", "preprocess=robust", "-S", "evaluate.threshold=0.7", "-S", "data.window=2",
           keep=lambda ln: ln.startswith(("evaluate:", "Ran experiment")))
        name = p.dvc("exp", "list", "--name-only").out.split()[0]
        sh(dvc, "exp", "apply", name)
        sh("git", "commit", "-qam", "experiment: robust, window 2, threshold 0.7")
        tether("release")
        tether("conf", "apply", "--dry-run")
        tether("conf", "apply")
        sh(dvc, "status")
        sh("git", "commit", "-qam", "conf: the experiment's overrides")
        tether("release", "--push", "-m", "robust preprocessing, window 2, threshold 0.7")
        res = p.tether("diff", "fraud-detector@v1.0.0", "fraud-detector@v1.1.0")
        lines = res.out.splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "params     changed")
        end = next(i for i, ln in enumerate(lines) if i > start and not ln.startswith("    "))
        print("$ tether diff fraud-detector@v1.0.0 fraud-detector@v1.1.0\n…\n" + "\n".join(lines[start:end + 2]) + "\n…")


if __name__ == "__main__":
    if sys.argv[1:] == ["experiment"]:
        experiment()
        sys.exit(0)
    flows() if sys.argv[1:] == ["flows"] else main()
