"""The pure core, with tables of cases: the DVC graph walk, code dependencies, manifest diff,
bump proposal, gates, and the rollback-target rule."""

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core import codedeps
from tether.core import dvcgraph
from tether.core import gates
from tether.core import history
from tether.core import manifest as mf
from tether.core.moves import Event

DVC_YAML = {"artifacts": {"m": {"path": "models/m", "type": "model"}, "ds": {"path": "data/x", "type": "dataset"}}}


def lock(**stages):
    return {"schema": "2.0", "stages": stages}


def f(path, md5="0" * 32):
    return {"path": path, "md5": md5, "size": 1, "hash": "md5"}


LOCK = lock(
    snapshot={"cmd": "PYTHONPATH=src python -m pkg.snapshot", "deps": [f("src/pkg/snapshot.py")],
              "params": {"params.yaml": {"seed": 1}}, "outs": [f("data/raw.csv")]},
    train={"cmd": "PYTHONPATH=src python -m pkg.train", "deps": [f("data/raw.csv"), f("src/pkg/train.py")],
           "params": {"params.yaml": {"model": {"depth": 3}}}, "outs": [f("models/m/model.skops")]},
    evaluate={"cmd": "python scripts/eval.py", "deps": [f("models/m/model.skops"), f("data/raw.csv"), f("scripts/eval.py")],
              "params": {"params.yaml": {"evaluate": {"threshold": 0.5}}}, "outs": [f("models/m/threshold.json")]},
    unrelated={"cmd": "python other.py", "deps": [f("other.py")], "outs": [f("reports/other.csv")]},
)


def test_graph_walks_upstream_from_the_artifact_only():
    g = dvcgraph.model_graph(DVC_YAML, LOCK, "m")
    assert [s.name for s in g.stages] == ["snapshot", "train", "evaluate"]
    assert [w.path for w in g.weights] == ["models/m/model.skops", "models/m/threshold.json"]
    assert [d.path for d in g.data] == ["data/raw.csv"]
    assert g.code == ("scripts/eval.py", "src/pkg/snapshot.py", "src/pkg/train.py")
    assert g.params["params.yaml"] == {"seed": 1, "model": {"depth": 3}, "evaluate": {"threshold": 0.5}}


def test_unknown_model_is_not_found():
    from tether.errors import NotFound

    with pytest.raises(NotFound):
        dvcgraph.model_graph(DVC_YAML, LOCK, "nope")
    with pytest.raises(NotFound):  # a dataset artifact is not a model
        dvcgraph.model_graph(DVC_YAML, LOCK, "ds")


@pytest.mark.parametrize(
    "cmd,expected",
    [
        ("PYTHONPATH=src python -m pkg.train", [("root", "src"), ("module", "pkg.train")]),
        ("python3 scripts/train.py --fast", [("script", "scripts/train.py")]),
        ("python -u -m pkg.mod && echo done", [("module", "pkg.mod")]),
        ("bash run.sh", []),
        ("/usr/bin/python3.11 train.py", [("script", "train.py")]),
    ],
)
def test_stage_entrypoints(cmd, expected):
    assert dvcgraph.stage_entrypoints(cmd) == expected


SOURCES = {
    "src/pkg/__init__.py": '"""docstring only"""\n',
    "src/pkg/train.py": "import numpy\nfrom pkg import preprocess\nfrom .features import build\n",
    "src/pkg/preprocess.py": "from pkg.util import helper\n",
    "src/pkg/features.py": "x = 1\n",
    "src/pkg/util.py": "",
}


def test_undeclared_sources_follow_imports_transitively():
    stage = dvcgraph.lock_stages(lock(train={
        "cmd": "PYTHONPATH=src python -m pkg.train",
        "deps": [f("src/pkg/train.py"), f("src/pkg/features.py")], "outs": []}))["train"]
    missing = codedeps.undeclared_sources(stage, SOURCES.get)
    assert set(missing) == {"src/pkg/preprocess.py", "src/pkg/util.py"}
    assert "imported by src/pkg/train.py" in missing["src/pkg/preprocess.py"]


def test_a_directory_dep_declares_every_file_under_it():
    stage = dvcgraph.lock_stages(lock(train={
        "cmd": "PYTHONPATH=src python -m pkg.train", "deps": [f("src/pkg")], "outs": []}))["train"]
    assert codedeps.undeclared_sources(stage, SOURCES.get) == {}


def manifest(**over):
    m = {
        "schema_version": 1, "model": "m", "version": "1.0.0", "commit": "c" * 40, "tree": "t" * 40,
        "created_at": "2026-01-01T00:00:00Z", "released_by": "x",
        "components": {
            "weights": [{"path": "models/m/model.skops", "md5": "a", "role": "model"},
                        {"path": "models/m/threshold.json", "md5": "t1", "role": "threshold"}],
            "data": [{"path": "data/raw.csv", "md5": "d1"}],
            "code": [{"path": "src/pkg/train.py", "git_id": "g1"}],
            "params": {"sha256": "p1", "values": {"model": {"depth": 3}, "evaluate": {"threshold": 0.5}}},
            "threshold": {"value": 0.5, "source": "fixed", "params": ["evaluate"]},
        },
        "metrics": {"f1": 0.8, "roc_auc": 0.9},
        "feature_schema": {"features": [{"name": "a", "dtype": "float64", "min": 0, "max": 1}]},
    }
    for path, value in over.items():
        node = m
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
    return m


@pytest.mark.parametrize(
    "change,bump",
    [
        ({"feature_schema__features": [{"name": "b", "dtype": "float64"}]}, "major"),
        ({"feature_schema__features": [{"name": "a", "dtype": "int64"}]}, "major"),
        ({"feature_schema__features__0__max": 5}, None),  # ranges drift with data: not a contract change
        ({"components__data__0__md5": "d2"}, "minor"),
        ({"components__params__values": {"model": {"depth": 4}, "evaluate": {"threshold": 0.5}}, "components__params__sha256": "p2"}, "minor"),
        ({"components__weights__0__md5": "b"}, "minor"),
        ({"components__threshold__value": 0.6, "components__weights__1__md5": "t2",
          "components__params__values": {"model": {"depth": 3}, "evaluate": {"threshold": 0.6}}}, "patch"),
        ({"components__code__0__git_id": "g2"}, "patch"),
        ({}, None),
    ],
)
def test_bump_proposal(change, bump):
    prev = manifest()
    cur = manifest(**copy.deepcopy(change))
    assert mf.propose_bump(prev, cur)[0] == bump


def test_diff_reports_files_keys_threshold_and_metric_deltas():
    a = manifest()
    b = manifest(components__code__0__git_id="g2", components__threshold__value=0.6,
                 components__params__values={"model": {"depth": 4}, "evaluate": {"threshold": 0.6}},
                 metrics={"f1": 0.85, "roc_auc": 0.9})
    b["version"] = "1.1.0"
    d = mf.diff(a, b)
    assert d["components"]["code"]["modified"] == ["src/pkg/train.py"]
    assert d["components"]["params"]["keys"] == {"evaluate.threshold": {"from": 0.5, "to": 0.6},
                                                 "model.depth": {"from": 3, "to": 4}}
    assert d["components"]["threshold"] == {"changed": True, "from": 0.5, "to": 0.6}
    assert d["components"]["data"]["changed"] is False
    assert d["metrics"]["f1"]["delta"] == pytest.approx(0.05)


@pytest.mark.parametrize("message", ["", "by hand", "{not json", '{"schema_version": 2}', '{"schema_version": 1}', "[1]"])
def test_manifest_loads_rejects_what_is_not_a_manifest(message):
    with pytest.raises(mf.ManifestError):
        mf.loads(message)


def test_manifest_roundtrips_through_a_tag_message():
    m = manifest()
    assert mf.loads(mf.tag_message(m, "Release m v1.0.0")) == m


@pytest.mark.parametrize(
    "current,candidate,ok",
    [
        ({"f1": 0.80}, {"f1": 0.77}, True),  # -3.75 %: within 5 %
        ({"f1": 0.80}, {"f1": 0.75}, False),  # -6.25 %
        ({"loss": 1.0}, {"loss": 1.04}, True),
        ({"loss": 1.0}, {"loss": 1.10}, False),  # lower is better
        ({"f1": 0.8, "threshold": 0.5}, {"f1": 0.8, "threshold": 0.9}, True),  # not a quality metric
        ({"f1": 0.8}, {"roc_auc": 0.1}, True),  # nothing in common to compare
    ],
)
def test_regression_gate(current, candidate, ok):
    assert gates.regression(current, candidate, 0.05, ("loss",)).ok is ok


def ev(release, action="promote", previous="none", time="2026-01-01T00:00:00Z"):
    return Event(env="production", commit=release, action=action, release=release, tag_object="", previous=previous,
                 approver="a", reason="r", time=time, tree="")


def chain(*moves):
    """Build newest-first events from oldest-first (action, release) moves."""
    events, live = [], "none"
    for action, rel in moves:
        events.insert(0, ev(rel, action, live))
        live = rel
    return events


@pytest.mark.parametrize(
    "moves,target",
    [
        ([("promote", "v1"), ("promote", "v2"), ("promote", "v3")], "v2"),
        ([("promote", "v1"), ("promote", "v2"), ("promote", "v3"), ("rollback", "v2")], "v1"),
        ([("promote", "v1")], None),
        ([("promote", "v1"), ("promote", "v2"), ("rollback", "v1")], None),
        ([("promote", "v1"), ("promote", "v2"), ("rollback", "v1"), ("promote", "v3")], "v1"),
        ([("promote", "v1"), ("promote", "v1b"), ("promote", "v1")], "v1b"),
    ],
)
def test_rollback_target(moves, target):
    assert history.rollback_target(chain(*moves)) == target


@given(st.lists(st.tuples(st.sampled_from(["promote", "rollback"]), st.sampled_from(["v1", "v2", "v3", "v4"])),
                min_size=1, max_size=12))
def test_rollback_target_properties(moves):
    events = chain(*moves)
    target = history.rollback_target(events)
    if target is None:
        return
    assert target != events[0].release  # never the one running now
    assert target not in {e.previous for e in events if e.action == "rollback"}  # never one rolled back from
    assert target in {e.release for e in events[1:]}  # was live before


def test_live_at_is_exact_even_within_one_second():
    events = [ev("v3", time="2026-01-01T10:00:00.900000Z"), ev("v2", time="2026-01-01T10:00:00.100000Z"),
              ev("v1", time="2026-01-01T09:00:00Z")]
    at = history.parse_time
    assert history.live_at(events, at("2026-01-01T10:00:00.500000Z")).release == "v2"
    assert history.live_at(events, at("2026-01-01T10:00:01Z")).release == "v3"
    assert history.live_at(events, at("2026-01-01T09:30:00")).release == "v1"  # no zone: UTC
    assert history.live_at(events, at("2025-12-31T00:00:00Z")) is None


def test_a_bad_time_is_a_usage_error():
    from tether.errors import UsageError

    with pytest.raises(UsageError):
        history.parse_time("yesterday")
