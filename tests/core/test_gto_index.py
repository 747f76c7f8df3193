"""GTO's versions and stage holders computed from tag records (core/gto.py) at registry scale:
`tether status` and `tether check` compute them for every environment whenever their kept view
misses, so they must stay linear in the tags (they were quadratic: 15 s of `status` at 10,000
releases). The rules themselves are checked against the real gto in tests/interop/test_gto_tags.py."""

from __future__ import annotations

import time

import pytest

from tether.core.gto import TagRecord, is_deprecated, parse_gto_tag, stage_holders, stage_state


def rec(name: str, commit: str, t: int, commit_time: int | None = None) -> TagRecord:
    tag = parse_gto_tag(name)
    assert tag is not None, name
    return TagRecord(tag, commit, t, commit_time)


def registry(releases: int) -> list[TagRecord]:
    """`releases` registrations of m (one commit each), every tenth promoted to staging and then
    prod, every hundredth production move undone by an unassignment; one other model."""
    recs = [rec(f"m@v{i}.0.0", f"c{i}", 10 * i, 10 * i - 5) for i in range(releases)]
    for i in range(0, releases, 10):
        recs.append(rec(f"m#staging#{i}", f"c{i}", 10 * i + 1))
        recs.append(rec(f"m#prod#{i}", f"c{i}", 10 * i + 2))
        if i % 100 == 0:
            recs.append(rec(f"m#prod!#{i}", f"c{i}", 10 * i + 3))
    return recs + [rec("other@v1.0.0", "c0", 1)]


def test_stage_holders_linear_at_twenty_thousand_releases():
    recs = registry(20_000)
    started = time.perf_counter()
    holders = stage_holders(recs, "m")
    took = time.perf_counter() - started
    # the newest prod assignment (c19990) is not undone; the newest undone one was c19900
    assert holders == {"staging": ("v19990.0.0", "c19990"), "prod": ("v19990.0.0", "c19990")}
    assert not is_deprecated(recs, "m")
    # linear: well under a second here; the quadratic scan took minutes at this size
    assert took < 5, f"stage_holders took {took:.1f} s for {len(recs)} tags"


def test_unassigned_newest_hands_the_stage_to_the_previous_holder():
    recs = registry(101)  # the newest prod move (c100) is undone: c90 holds prod again
    assert stage_state(recs, "m") == {"staging": "v100.0.0", "prod": "v90.0.0"}


def test_two_versions_at_one_commit_fail_as_gto_does():
    recs = [rec("m@v1.0.0", "c1", 1), rec("m@v2.0.0", "c1", 2), rec("m#prod#1", "c1", 3)]
    with pytest.raises(ValueError, match=r"versions \['v1.0.0', 'v2.0.0'\] share commit c1"):
        stage_holders(recs, "m")


def test_assignments_to_an_unregistered_commit_form_one_version_named_by_the_commit():
    recs = [rec("m@v1.0.0", "c1", 1), rec("m#prod#1", "c9", 2), rec("m#prod!#2", "c9", 3), rec("m#prod#3", "c9", 4)]
    assert stage_state(recs, "m") == {"prod": "c9"}
    assert stage_state(recs[:3], "m") == {"prod": None}


def test_a_deregistered_version_keeps_no_stage_and_the_deprecation_counts_commit_times():
    recs = [rec("m@v1.0.0", "c1", 1, commit_time=50), rec("m@v2.0.0", "c2", 2),
            rec("m#prod#1", "c1", 3), rec("m#prod#2", "c2", 4), rec("m@v2.0.0!", "c2", 5)]
    assert stage_state(recs, "m") == {"prod": "v1.0.0"}
    # v1's commit is dated 50, after the deprecation at 40: the model is still active
    assert not is_deprecated([*recs, rec("m@deprecated", "c1", 40)], "m")
    assert is_deprecated([*recs, rec("m@deprecated", "c1", 60)], "m")
