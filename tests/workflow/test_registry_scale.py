"""1,000 releases made within one second, 300 promotions: order by SemVer and by history,
never by timestamps. (Timing lives in bench/registry.py.)"""

import sys
from pathlib import Path

import pytest
import semver  # an independent implementation to compare against

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from synthetic import build_registry_repo, versions  # noqa: E402


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory):
    return build_registry_repo(tmp_path_factory.mktemp("registry") / "repo", releases=1000, promotions=300)


def run(repo, *args):
    import json
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "tether.cli", *args, "--json"], cwd=repo, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_thousand_releases_in_one_second_list_in_semver_order(big_repo):
    rows = run(big_repo, "list")
    assert len(rows) == 1000
    assert len({r["created_at"] for r in rows}) == 1  # all in the same second: no clock to sort by
    expected = sorted(versions(1000), key=semver.Version.parse, reverse=True)
    assert [r["version"] for r in rows] == expected
    listed = [r["version"] for r in rows]
    assert listed.index("1.10.0") < listed.index("1.9.0") < listed.index("1.9.0-rc.1") or "1.9.0-rc.1" not in listed
    assert listed.index("1.0.0-rc.10") < listed.index("1.0.0-rc.2") < listed.index("1.0.0-rc.1")


def test_stages_and_history_come_from_the_branches(big_repo):
    rows = {r["tag"]: r for r in run(big_repo, "list")}
    hist = run(big_repo, "history")["environments"]
    prod, staging = hist["production"]["events"], hist["staging"]["events"]
    assert len(prod) == 150 and len(staging) == 150
    assert rows[prod[0]["release"]]["stage"] in ("production", "staging,production")
    assert rows[prod[-1]["release"]]["stage"] == "archived"
    shown = run(big_repo, "show", "production")
    assert f"fraud-detector@v{shown['version']}" == prod[0]["release"]
    never = [t for t, r in rows.items() if "-rc" in t]
    assert never and all(rows[t]["stage"] == "registered" for t in never)


def test_history_at_distinguishes_moves_within_one_second(big_repo):
    events = run(big_repo, "history", "--env", "production")["environments"]["production"]["events"]
    a, b = events[1], events[0]  # microseconds apart, same committer second
    assert a["time"][:19] == b["time"][:19]
    at = lambda t: run(big_repo, "history", "--env", "production", "--at", t)["environments"]["production"]["live_at"]
    assert at(a["time"])["release"] == a["release"]
    assert at(b["time"])["release"] == b["release"]
