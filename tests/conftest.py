"""Shared fixtures. Every test is isolated from the host's git and DVC configuration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """HOME in a temp dir, no system git config, a fixed identity and pinned commit dates
    (scmrepo's habit), so no test reads or writes the host's configuration."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Tess Tether")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "tess@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Tess Tether")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "tess@example.com")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(home / "dvc-site-cache"))
    from project import ISOLATION

    monkeypatch.setenv("TETHER_CACHE_DIR", ISOLATION["TETHER_CACHE_DIR"])
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    yield home


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def s3_endpoint():
    from s3server import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture
def s3_remote(s3_endpoint, monkeypatch, request):
    """A fresh bucket on the session's S3 server; credentials come from the environment."""
    import hashlib
    import re

    from s3server import CREDENTIALS, make_bucket

    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    # unique per test, parameters included: two cases cut to the same 50 characters would share
    # one bucket, and a test that damages an object would see the other's damage (or undo it)
    name = request.node.name.lower()
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    bucket = (re.sub(r"[^a-z0-9-]", "-", name)[:50].strip("-") or "bucket") + "-" + digest
    make_bucket(s3_endpoint, bucket)
    return {"endpoint": s3_endpoint, "bucket": bucket, "url": f"s3://{bucket}/dvcstore"}


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """The reference project reproduced, committed, released as v1.0.0 and pushed: once."""
    from project import build_template, isolated_home

    with isolated_home(tmp_path_factory, "template"):
        yield build_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def project(template, tmp_path):
    from project import clone_template

    return clone_template(template, tmp_path / "p")


@pytest.fixture(scope="session")
def template_live(template, tmp_path_factory):
    """The template with v1.0.0 promoted to production (promote_to, not pushed): once, for the
    many tests that start from a live release."""
    from project import clone_template, isolated_home, promote_to

    with isolated_home(tmp_path_factory, "template-live"):
        p = clone_template(template, tmp_path_factory.mktemp("template-live"))
        promote_to(p, "fraud-detector@v1.0.0")
        yield p


@pytest.fixture
def project_live(template_live, tmp_path):
    """A private copy of the project with v1.0.0 live in production."""
    from project import clone_template

    return clone_template(template_live, tmp_path / "p")


@pytest.fixture(scope="session")
def signed_base(tmp_path_factory):
    """The churn shape with a committed signing policy and signed releases and moves: once."""
    from signhelp import build_signed

    yield from build_signed(tmp_path_factory)


@pytest.fixture
def signed(signed_base, tmp_path):
    from signhelp import copy_signed

    return copy_signed(signed_base, tmp_path)


CORE = Path(__file__).resolve().parent / "core"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/core holds the pure core's table tests (no git, no DVC, no subprocess): `pytest -m
    core` (or `pytest tests/core`) runs them alone in seconds."""
    for item in items:
        if CORE in Path(item.path).parents:
            item.add_marker(pytest.mark.core)
