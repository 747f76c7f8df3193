"""`tether init` (issue 30, item 3): on a DVC repository with no model declared, it finds the
model the pipeline writes, declares it in dvc.yaml with a minimal edit, says where the threshold,
metrics and data come from, and (once committed) what `tether release --dry-run` would do.
Idempotent; refuses a dirty dvc.yaml; asks before it writes, and with no terminal and no
`--yes` it only prints the proposal (exit 2)."""

from __future__ import annotations

import re

from shapes import build_textclf


def strip_artifacts(p) -> str:
    """dvc.yaml without its `artifacts:` block (and a comment init must keep), committed."""
    path = p.root / "dvc.yaml"
    text = path.read_text()
    text = "# my pipeline, my comments\n" + text[: text.index("artifacts:")].rstrip("\n") + "\n"
    path.write_text(text)
    p.commit_all("no model declared yet")
    return text


def test_init_declares_the_model_of_a_repository_shaped_unlike_the_reference(tmp_path):
    p = build_textclf(tmp_path)
    before = strip_artifacts(p)
    assert "tether init" in p.ok("list").out
    assert "tether init" in p.ok("status").out

    asked = p.tether("init")  # no terminal (stdin is /dev/null), no --yes: the proposal, exit 2
    assert asked.code == 2, asked
    assert "textclf: path models/textclf" in asked.out and "--yes" in asked.err
    assert (p.root / "dvc.yaml").read_text() == before

    out = p.ok("init", "--yes").out
    after = (p.root / "dvc.yaml").read_text()
    assert after == before + "artifacts:\n  textclf:\n    path: models/textclf\n    type: model\n"
    assert "threshold: 0.5 from models/textclf/threshold.json" in out, out
    assert re.search(r"metrics: .*metrics\.json", out), out
    assert re.search(r"data: .*data/raw", out), out
    assert "git add dvc.yaml" in out
    assert p.git("status", "--porcelain") == "M dvc.yaml"

    again = p.ok("init", "--yes").out  # idempotent: nothing to change, said so
    assert "nothing to change" in again and (p.root / "dvc.yaml").read_text() == after

    p.commit_all("declare textclf")
    preview = p.ok("init", "--json").json()  # committed: the release it would make, no --yes needed
    assert preview["changed"] is False and preview["declared"] == {"textclf": "models/textclf"}
    # release --dry-run's own answer: every gate passes but the remote one (nothing pushed yet)
    said = preview["release"]["textclf"]
    assert said["ok"] is False and "not on the DVC remote" in said["error"] and "--push" in said["hint"]
    assert {g["gate"]: g["ok"] for g in said["gates"]}["tag"] is True
    assert "textclf@v1.0.0 is free" in p.ok("init").out
    assert p.ok("release", "--push", "--json").json()["tag"] == "textclf@v1.0.0"


def test_init_refuses_a_dirty_dvc_yaml_and_changes_nothing(tmp_path):
    p = build_textclf(tmp_path)
    strip_artifacts(p)
    path = p.root / "dvc.yaml"
    dirty = path.read_text() + "# an edit in progress\n"
    path.write_text(dirty)
    res = p.tether("init", "--yes")
    assert res.code == 4, res
    assert "uncommitted changes" in res.err and "changed nothing" in res.err
    assert path.read_text() == dirty


def test_init_on_the_reference_project(project):
    res = p_ok = project.ok("init")  # declared already: nothing to change
    assert "nothing to change: dvc.yaml declares fraud-detector" in p_ok.out, res
    assert "threshold:" in res.out and "data: data/raw/transactions.parquet" in res.out
    assert "tether release --dry-run" in res.out
    assert project.git("status", "--porcelain") == ""

    text = (project.root / "dvc.yaml").read_text()
    (project.root / "dvc.yaml").write_text(text[: text.index("artifacts:")])
    project.commit_all("no model declared")
    out = project.ok("init", "--yes").out
    assert "fraud-detector: path models/fraud-detector" in out  # the model file's own directory
    assert "threshold: " in out and "from models/fraud-detector/threshold.json" in out
    assert (project.root / "dvc.yaml").read_text().endswith(
        "artifacts:\n  fraud-detector:\n    path: models/fraud-detector\n    type: model\n")


def test_init_with_a_path_for_a_model_nothing_names(tmp_path):
    p = build_textclf(tmp_path)
    strip_artifacts(p)
    res = p.ok("init", "--path", "models/textclf", "--name", "sentiment", "--yes", "--json").json()
    assert res["written"] is True and res["proposal"][0]["name"] == "sentiment"
    assert "sentiment:\n    path: models/textclf" in (p.root / "dvc.yaml").read_text()
