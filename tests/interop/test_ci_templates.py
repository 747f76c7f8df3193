"""The CI templates under examples/ci/ (issue 14, item 4): valid YAML with the triggers the
README promises, and the commands they run, run here as CI would on a signed project: green
on a good history, red (exit 6) once a move is forged."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from project import BIN, REPO_ROOT, Project
from shapes import clone
from signhelp import forge_move

CI = REPO_ROOT / "examples/ci"


def github_steps(doc: dict, job: str) -> list[str]:
    return [s["run"] for s in doc["jobs"][job]["steps"] if "run" in s]


def gitlab_steps(doc: dict, job: str) -> list[str]:
    return [*doc[job].get("before_script", []), *doc[job]["script"]]


def load(name: str) -> dict:
    return yaml.safe_load((CI / name).read_text())


def test_the_templates_trigger_on_release_tags_and_environment_pushes():
    gh = load("github-actions.yml")
    on = gh[True] if True in gh else gh["on"]  # YAML 1.1 reads the key `on` as true
    assert on["push"]["tags"] == ["*@v*"] and set(on["push"]["branches"]) == {"staging", "production"}
    assert gh["jobs"]["deploy"]["needs"] == "check" and gh["jobs"]["deploy"]["if"] == "github.ref_type == 'branch'"
    assert any(s.get("with", {}).get("fetch-depth") == 0 for s in gh["jobs"]["check"]["steps"])
    gl = load("gitlab-ci.yml")
    assert gl["variables"]["GIT_DEPTH"] == "0"
    rules = [r["if"] for r in gl["tether-check"]["rules"]]
    assert "$CI_COMMIT_TAG =~ /@v[0-9]/" in rules
    assert gl["tether-deploy"]["needs"] == ["tether-check"]
    for steps in (github_steps(gh, "check"), gitlab_steps(gl, "tether-check")):
        assert "tether check" in steps
    for steps in (github_steps(gh, "deploy"), gitlab_steps(gl, "tether-deploy")):
        assert any(s.startswith("tether deploy") and "--require-signed" in s for s in steps)


def run_steps(steps: list[str], cwd: Path, env: dict) -> list[tuple[str, int, str]]:
    """Every git and tether command of a job, through the shell as the runner would; pip
    lines install tether, which this test environment already has."""
    out = []
    for step in steps:
        if step.startswith("pip "):
            continue
        proc = subprocess.run(["bash", "-ec", step], cwd=cwd, env=env, capture_output=True, text=True)
        out.append((step, proc.returncode, proc.stdout + proc.stderr))
        if proc.returncode:
            break
    return out


@pytest.mark.parametrize("template", ["github-actions.yml", "gitlab-ci.yml"])
def test_the_commands_the_templates_run_pass_then_catch_a_forged_move(signed, tmp_path, template):
    p, _keys = signed
    doc = load(template)
    jobs = ("check", "deploy") if template.startswith("github") else ("tether-check", "tether-deploy")
    steps = github_steps if template.startswith("github") else gitlab_steps
    runner = clone(p, tmp_path / "runner")  # what actions/checkout or the GitLab runner has
    env = {**p.env(), "PATH": BIN + os.pathsep + os.environ["PATH"], "TETHER_ENV": "production",
           "TETHER_TARGET": str(tmp_path / "serving"),
           "TETHER_ALLOWED_SIGNERS": str(p.root / ".tether/allowed_signers")}
    for job in jobs:
        results = run_steps(steps(doc, job), runner, env)
        assert all(code == 0 for _, code, _ in results), results
    assert (tmp_path / "serving/current").resolve().name == "churn@v1.0.0"

    forge_move(Project(p.base), "production", "churn@v1.1.0", approver="lead@example.com", key=None)
    check = run_steps(steps(doc, jobs[0]), runner, env)
    assert check[-1][0] == "tether check" and check[-1][1] == 6, check
    deploy = run_steps(steps(doc, jobs[1]), runner, env)
    assert deploy[-1][0].startswith("tether deploy") and deploy[-1][1] == 6, deploy
    assert (tmp_path / "serving/current").resolve().name == "churn@v1.0.0"  # still serving
