"""Helpers for tests/workflow/test_publish_gc.py: the text classifier with an evaluation stage that
caches a DIRECTORY (eval/report/, outside the released tuple), fresh-clone pulls of every ref on
origin, and a DVC remote's objects by md5 (local directory or moto's S3)."""

from __future__ import annotations

import os
import re
import textwrap
import time
from pathlib import Path

from project import BIN, Project
from shapes import build_textclf, clone

REPORT_STAGE = """\
  report:
    cmd: python src/textclf/report.py
    deps:
      - eval/metrics.json
      - src/textclf/report.py
    params:
      - evaluate.threshold
    outs:
      - eval/report
"""

REPORT_PY = '''\
    """An evaluation report: a cached directory of files derived from the metrics."""
    import json
    from pathlib import Path

    import yaml

    params = yaml.safe_load(Path("params.yaml").read_text())
    metrics = json.loads(Path("eval/metrics.json").read_text())
    out = Path("eval/report")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({**metrics, "threshold": params["evaluate"]["threshold"]}) + "\\n")
    (out / "table.csv").write_text("metric,value\\n" + "".join(f"{k},{v}\\n" for k, v in metrics.items()))
'''


def build_evaldir(base: Path, s3: dict | None = None) -> Project:
    """build_textclf plus a `report` stage whose output eval/report/ is a cached directory no
    release's tuple contains; committed and pushed to origin's main; nothing DVC pushed."""
    p = build_textclf(base, s3=s3)
    text = (p.root / "dvc.yaml").read_text()
    text = text.replace("\nartifacts:", REPORT_STAGE + "\nartifacts:", 1)
    (p.root / "dvc.yaml").write_text(text)
    (p.root / "src/textclf/report.py").write_text(textwrap.dedent(REPORT_PY))
    p.dvc("repro", "-q")
    p.commit_all("evaluation report: a cached directory")
    p.git("push", "-q", "origin", "main")
    return p


def set_threshold(p: Project, value: float, root: Path | None = None) -> None:
    params = (root or p.root) / "params.yaml"
    params.write_text(re.sub(r"threshold: [0-9.]+", f"threshold: {value}", params.read_text()))


def new_commit(p: Project, value: float) -> str:
    """A commit whose report (and model: train reads the threshold too) is new."""
    set_threshold(p, value)
    p.dvc("repro", "-q")
    return p.commit_all(f"threshold {value}")


def fresh_clone_pulls(p: Project, dest: Path) -> dict[str, str]:
    """Clone origin afresh; for every branch and tag there, `git checkout REF && dvc pull`.
    Returns {ref: error} of the refs whose pull failed (empty: all pullable)."""
    clone(p, dest)
    refs = p.sh("git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/remotes/origin", "refs/tags",
                cwd=dest).out.split("\n")
    failed: dict[str, str] = {}
    done: set[str] = set()
    for line in filter(None, refs):
        name, _ = line.split()
        if name.endswith("/HEAD"):
            continue
        commit = p.sh("git", "rev-parse", f"{name}^{{commit}}", cwd=dest).out.strip()
        if commit in done:
            continue
        done.add(commit)
        p.sh("git", "checkout", "-q", "-f", commit, cwd=dest)
        res = p.sh(os.path.join(BIN, "dvc"), "pull", "-q", cwd=dest, check=False)
        if res.code != 0:
            failed[name] = (res.out + res.err).strip()[-500:]
    return failed


def store_objects(p: Project) -> dict[str, Path]:
    """{md5: path} of every object in a local DVC remote directory."""
    root = p.store / "files" / "md5"
    return {f"{f.parent.name}{f.name}": f for f in root.rglob("*") if f.is_file()} if root.exists() else {}


def age(paths, days: float) -> None:
    """Make files (cache or local-remote objects) look `days` old: their mtime, as DVC sets it."""
    then = time.time() - days * 86400
    for path in paths:
        os.utime(path, (then, then))


def lock_md5(root: Path, out_path: str) -> str:
    import yaml

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for o in stage.get("outs") or []:
            if o["path"] == out_path:
                return o["md5"]
    raise KeyError(out_path)
