"""Paths a person can write never escape: dvc.yaml, dvc.lock, tag messages, symlinks in a
commit. Every refusal is exit 6 and writes nothing outside (the model-shape issue, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapes import build_churn

from tether.core import paths
from tether.errors import IntegrityError


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../x", "a/..", "..", "", ".", "C:/x",
                                 "s3://bucket/model.pkl", ".git/config", "a/.git/hooks/x", "a\0b"])
def test_unsafe_paths_are_named(bad):
    assert paths.problem(bad) is not None
    with pytest.raises(IntegrityError):
        paths.safe(bad)


@pytest.mark.parametrize("good,norm", [("a/b", "a/b"), ("./a//b", "a/b"), (".hidden/x", ".hidden/x"),
                                        ("a/./b", "a/b"), ("models/churn.pkl", "models/churn.pkl"),
                                        (".github/x", ".github/x")])
def test_safe_paths_are_normalised_not_rewritten(good, norm):
    assert paths.safe(good) == norm


def test_urls_keep_their_double_slash():
    from tether.core.dvcgraph import norm

    assert norm("s3://bucket/models/m.pkl") == "s3://bucket/models/m.pkl"
    assert norm("../up") == "../up" and norm("/abs/x") == "/abs/x"  # kept, so they can be refused


def test_inside_refuses_a_symlinked_parent_that_leaves_the_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "models").symlink_to(outside)
    with pytest.raises(IntegrityError, match="symlink"):
        paths.inside(root, "models/m.pkl")
    (root / "ok").mkdir()
    (root / "inner").symlink_to(root / "ok")  # a link that stays inside is fine
    assert paths.inside(root, "inner/m.pkl") == root / "inner/m.pkl"


# -- hand-made releases, end to end ---------------------------------------------------------
def _hand_release(p, tag: str, edit) -> str:
    """A commit on a side branch edited by `edit(root)`, tagged by hand with git tag."""
    p.git("checkout", "-q", "-b", f"hand-{tag.replace('@', '-')}")
    edit(p.root)
    commit = p.commit_all(f"hand edit for {tag}")
    p.git("tag", tag)
    p.git("checkout", "-q", "main")
    return commit


def _untouched(tmp_path: Path, before: set[str]) -> None:
    after = {str(f) for f in tmp_path.rglob("*") if "outside" in f.parts}
    assert after == before, sorted(after - before)


@pytest.fixture
def churn(tmp_path):
    p = build_churn(tmp_path / "p", "dvc")
    (tmp_path / "outside").mkdir()
    return p


def _sub(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("how", ["dotdot-artifact", "absolute-artifact", "dotdot-lock-out"])
def test_escaping_paths_in_a_commit_are_exit_6_and_write_nothing(churn, tmp_path, how):
    p = churn
    outside = tmp_path / "outside"
    before = {str(f) for f in tmp_path.rglob("*") if "outside" in f.parts}

    def edit(root: Path):
        if how == "dotdot-artifact":
            _sub(root / "dvc.yaml", "path: models/churn.pkl", "path: ../../outside/churn.pkl")
        elif how == "absolute-artifact":
            _sub(root / "dvc.yaml", "path: models/churn.pkl", f"path: {outside}/churn.pkl")
        else:
            _sub(root / "dvc.lock", "path: eval/evaluate/metrics.json", "path: ../../outside/metrics.json")

    _hand_release(p, "churn@v9.0.0", edit)
    for args in (["checkout", "churn@v9.0.0"], ["verify", "churn@v9.0.0"], ["show", "churn@v9.0.0"]):
        res = p.tether(*args)
        assert res.code == 6, (args, res.code, res.err)
        assert "outside" in res.err or "absolute" in res.err or "leaves" in res.err, res.err
    lst = p.ok("list", "--json").json()
    assert "churn@v9.0.0" in json.dumps(lst)
    _untouched(tmp_path, before)
    assert p.git("rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_a_symlink_in_the_release_commit_that_leaves_the_tree_is_refused_by_deploy(churn, tmp_path):
    p = churn
    outside = tmp_path / "outside"
    p.ok("release", "--push")

    def edit(root: Path):
        (root / "src/churn/link").symlink_to(outside)

    _hand_release(p, "churn@v9.1.0", edit)
    p.ok("promote", "churn@v9.1.0", "--env", "staging", "--approver", "a", "--reason", "r", "--allow-regression", "r")
    target = tmp_path / "serving"
    res = p.tether("deploy", "--env", "staging", "--target", str(target))
    assert res.code == 6, res.err
    assert not any(outside.iterdir())
    assert not (target / "current").exists()


def test_a_decoy_artifact_path_in_a_tag_message_is_refused(churn, tmp_path):
    p = churn
    good = p.ok("release", "--push", "--json").json()
    # the same commit, tagged by hand with the real manifest except a decoy artifact path
    decoy = json.loads(json.dumps(good["manifest"]))
    decoy["version"] = "9.2.0"
    decoy["artifact"]["path"] = "src/churn"
    msg = tmp_path / "msg"
    msg.write_text("Release churn v9.2.0\n\n" + json.dumps(decoy, indent=2, sort_keys=True) + "\n")
    p.git("tag", "-a", "churn@v9.2.0", "-F", str(msg), good["commit"])
    for args in (["checkout", "churn@v9.2.0"], ["verify", "churn@v9.2.0"]):
        res = p.tether(*args)
        assert res.code == 6, (args, res.err)
        assert "artifact.path" in res.err, res.err
    assert p.git("rev-parse", "--abbrev-ref", "HEAD") == "main"
