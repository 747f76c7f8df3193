"""`tether reproduce`: a release rebuilt from scratch in a temporary clone, compared bit for bit.

Real git, real DVC, real `dvc repro --force`: the reference project (whose raw data a stage
generates) and the text classifier of tests/helpers/shapes.py (raw data `dvc add`ed, every output a
directory), made non-deterministic on purpose and stripped of its raw data on the remote.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from shapes import build_textclf, lock_outputs, object_path


def _tmp_clones(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith("tether-reproduce-"))


def _run(p, tmpdir: Path, *args: str):
    tmpdir.mkdir(exist_ok=True)
    return p.tether("reproduce", *args, env={"TMPDIR": str(tmpdir)})


def test_reference_release_reproduces_bit_identically(project, tmp_path):
    before = project.snapshot()
    res = _run(project, tmp_path / "tmp", "fraud-detector@v1.0.0", "--json")
    assert res.code == 0, res.out + res.err
    data = res.json()
    assert data["identical"] is True
    assert {p: v["state"] for p, v in data["parts"].items()} == {
        "weights": "identical", "data": "identical", "threshold": "identical", "metrics": "identical",
        "predictions": "identical"}
    # every DVC output of the release was rebuilt and compared by the sha256 its manifest records
    manifest = project.ok("show", "fraud-detector@v1.0.0", "--json").json()
    outs = {e["path"] for part in ("weights", "data") for e in manifest["components"][part] if e.get("md5")}
    assert {o["path"] for o in data["outputs"]} == outs
    assert all(o["digest"] == "sha256" and o["actual"] == o["expected"] for o in data["outputs"])
    assert set(data["stages"]) == {"compose", "snapshot", "split", "train", "evaluate", "bundle"}
    assert data["runtime"]["differences"] == [] and data["runtime"]["recorded"]["packages"]
    assert project.snapshot() == before  # the workspace is never touched
    assert _tmp_clones(tmp_path / "tmp") == []


@pytest.fixture(scope="module")
def textclf(tmp_path_factory):
    """The text classifier, released (v1.0.0) and pushed: raw data added with `dvc add`."""
    from project import isolated_home

    base = tmp_path_factory.mktemp("textclf")
    with isolated_home(tmp_path_factory, "textclf"):
        p = build_textclf(base / "p")
        p.ok("release", "--push", "-m", "deterministic")
        yield p


def test_directory_outputs_reproduce_and_report_inputs(textclf, tmp_path):
    res = _run(textclf, tmp_path / "tmp", "textclf@v1.0.0")
    assert res.code == 0, res.out + res.err
    assert "inputs       data/raw" in res.out
    assert "weights      bit-identical" in res.out and "predictions  not recorded" in res.out
    assert "fetching 1 input(s) from the DVC remote: data/raw" in res.err


NONDETERMINISTIC = '''
import os as _os
model["nonce"] = _os.urandom(8).hex()  # on purpose: every run writes different bytes
(out / "model.pkl").write_bytes(pickle.dumps(model, protocol=4))
'''


def test_non_deterministic_training_names_the_differing_files_and_exits_6(textclf, tmp_path):
    p = textclf
    train = p.root / "src/textclf/train.py"
    original = train.read_text()
    try:
        train.write_text(original + textwrap.dedent(NONDETERMINISTIC))
        p.dvc("repro", "-q")
        p.commit_all("train: a nonce in the model (non-deterministic)")
        p.ok("release", "--push", "--version", "1.1.0", "-m", "non-deterministic")
        before = p.snapshot()
        res = _run(p, tmp_path / "tmp", "textclf@v1.1.0", "--json")
        assert res.code == 6, res.out + res.err
        data = res.json()
        assert data["identical"] is False
        assert data["parts"]["weights"] == {"state": "differs", "differing": ["models/textclf/model.pkl"],
                                            "detail": "1 output(s)"}
        assert data["parts"]["data"]["state"] == "identical"  # prepared/ and features/ are deterministic
        assert data["parts"]["metrics"]["state"] == "identical"  # the nonce changes bytes, not predictions
        assert "does not reproduce bit for bit: weights differ" in res.err
        assert "not deterministic" in res.err  # same runtime: the hint blames the code
        assert p.snapshot() == before and _tmp_clones(tmp_path / "tmp") == []
        text = _run(p, tmp_path / "tmp", "textclf@v1.1.0")
        assert text.code == 6 and "weights      DIFFERS: models/textclf/model.pkl" in text.out
        assert "runtime      the release recorded none" in text.out
        # the earlier, deterministic release still reproduces from the same repository
        assert _run(p, tmp_path / "tmp", "textclf@v1.0.0").code == 0
    finally:
        p.git("checkout", "-q", "main")


def test_raw_data_missing_from_the_remote_exits_7_and_leaves_nothing(textclf, tmp_path):
    p = textclf
    raw_md5 = lock_outputs(p.root)["data/raw"]
    listing_obj = object_path(p.store, raw_md5)
    hidden = tmp_path / "hidden"
    shutil.move(listing_obj, hidden)  # the raw data's listing gone from the remote: it cannot be restored
    try:
        before = p.snapshot()
        cache_before = sorted(str(f) for f in (p.root / ".dvc" / "cache").rglob("*"))
        res = _run(p, tmp_path / "tmp", "textclf@v1.0.0")
        assert res.code == 7, res.out + res.err
        assert "the DVC remote lacks the release's input(s) data/raw" in res.err
        assert "running `dvc repro" not in res.err  # refused before anything ran
        assert p.snapshot() == before
        assert sorted(str(f) for f in (p.root / ".dvc" / "cache").rglob("*")) == cache_before
        assert _tmp_clones(tmp_path / "tmp") == []
    finally:
        os.makedirs(listing_obj.parent, exist_ok=True)
        shutil.move(hidden, listing_obj)


def test_the_scratch_clone_never_writes_a_shared_cache(tmp_path):
    """A committed `cache.dir` (a team's shared cache) is overridden in the clone's config.local:
    `dvc repro` in a scratch clone must not write objects anywhere but the clone."""
    from project import Project

    from tether.adapters.dvcstore import DvcStore

    p = Project(tmp_path)
    p.root.mkdir()
    p.git("init", "-q")
    p.dvc("init", "-q")
    shared = tmp_path / "shared-cache"
    p.dvc("cache", "dir", str(shared))  # committed .dvc/config, as a team would share it
    store = DvcStore(p.root)
    store.use_remote("r", {"url": str(tmp_path / "remote")}, own_cache=True)
    assert store.cache_path("ab" * 16).is_relative_to(p.root / ".dvc" / "cache")
    assert not store.cache_path("ab" * 16).is_relative_to(shared)
    assert "shared-cache" in (p.root / ".dvc" / "config").read_text()  # the committed file is left as it was
    store.close()
