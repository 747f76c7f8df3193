"""GTO's versions and stage holders computed from tag records (core/gto.py) at registry scale:
`tether status` and `tether check` compute them for every environment whenever their kept view
misses, so they must stay linear in the tags (they were quadratic: 15 s of `status` at 10,000
releases). The rules themselves are checked against the real gto in tests/interop/test_gto_tags.py."""

from __future__ import annotations

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


READS = [0]


class CountedRecord(TagRecord):
    """A TagRecord that counts every read of its fields: the work stage_holders does, measured
    in steps rather than seconds (the machines are shared; a timed test would be noise)."""

    def __getattribute__(self, name):
        if name in ("tag", "commit", "time", "commit_time"):
            READS[0] += 1
        return super().__getattribute__(name)


def reads_for(releases: int) -> tuple[int, int]:
    recs = [CountedRecord(r.tag, r.commit, r.time, r.commit_time) for r in registry(releases)]
    READS[0] = 0
    holders = stage_holders(recs, "m")
    last = (releases - 1) // 10 * 10
    assert holders["staging"] == (f"v{last}.0.0", f"c{last}")
    return READS[0], len(recs)


def test_stage_holders_read_each_tag_a_bounded_number_of_times():
    """Linear in the tags: ten times the releases, at most about ten times the reads (the
    quadratic scan read every tag once per version: 4,000 times more at 4,000 releases)."""
    small, n_small = reads_for(400)
    large, n_large = reads_for(4_000)
    assert large / n_large < 30, (large, n_large)  # a bounded number of reads per tag
    assert large / small < 12, (small, large)  # and the total grows with the tags, not their square


def test_stage_holders_at_twenty_thousand_releases():
    recs = registry(20_000)
    holders = stage_holders(recs, "m")
    # the newest prod assignment (c19990) is not undone; the newest undone one was c19900
    assert holders == {"staging": ("v19990.0.0", "c19990"), "prod": ("v19990.0.0", "c19990")}
    assert not is_deprecated(recs, "m")


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
