"""The tag grammar and SemVer order, as tables of cases and properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.errors import UsageError
from tether.core.refs import parse_ref, parse_tag
from tether.core.semver import Version


@pytest.mark.parametrize(
    "tag,model,version",
    [
        ("fraud-detector@v1.0.0", "fraud-detector", "1.0.0"),
        ("fraud-detector@v1.10.0", "fraud-detector", "1.10.0"),
        ("a@v0.0.1", "a", "0.0.1"),
        ("nlp/sentiment@v2.3.4", "nlp/sentiment", "2.3.4"),
        ("m2@v1.9.0-rc.1", "m2", "1.9.0-rc.1"),
        ("m@v1.0.0-alpha+build.7", "m", "1.0.0-alpha+build.7"),
        ("Fraud@v1.0.0", "Fraud", "1.0.0"),  # GTO allows upper case, `_` and `--`
        ("my_model@v1.0.0", "my_model", "1.0.0"),
        ("fraud--detector@v1.0.0", "fraud--detector", "1.0.0"),
    ],
)
def test_valid_release_tags(tag, model, version):
    name = parse_tag(tag)
    assert name is not None
    assert name.model == model
    assert str(name.version) == version
    assert name.tag == tag


@pytest.mark.parametrize(
    "tag",
    [
        "fraud-detector@1.0.0",  # no v
        "fraud-detector@v1.0",  # two parts
        "fraud-detector@v01.0.0",  # leading zero
        "fraud-@v1.0.0",  # trailing dash
        "_fraud@v1.0.0",  # leading underscore
        "@v1.0.0",  # no model
        "v1.0.0",  # plain version tag
        "fraud-detector@v1.0.0-",  # empty pre-release
        "fraud-detector@v1.0.0-01",  # numeric pre-release with leading zero
        "fraud-detector#v1.0.0",
        "fraud detector@v1.0.0",
    ],
)
def test_invalid_release_tags(tag):
    assert parse_tag(tag) is None


def test_semver_order_table():
    ordered = ["1.9.0-alpha", "1.9.0-alpha.1", "1.9.0-alpha.beta", "1.9.0-beta.2", "1.9.0-beta.11",
               "1.9.0-rc.1", "1.9.0", "1.9.1", "1.10.0", "2.0.0-rc.1", "2.0.0", "10.0.0"]
    versions = [Version.parse(v) for v in ordered]
    assert sorted(reversed(versions)) == versions
    assert Version.parse("1.10.0") > Version.parse("1.9.0") > Version.parse("1.9.0-rc.1")
    assert Version.parse("1.0.0+b1") == Version.parse("1.0.0+b2")  # build metadata ignored


@pytest.mark.parametrize(
    "start,part,expected",
    [("1.2.3", "major", "2.0.0"), ("1.2.3", "minor", "1.3.0"), ("1.2.3", "patch", "1.2.4"),
     ("1.3.0-rc.1", "patch", "1.3.0"), ("1.3.0-rc.1", "minor", "1.3.0"), ("1.3.0-rc.1", "major", "2.0.0"),
     ("2.0.0-rc.1", "major", "2.0.0"), ("2.0.0-rc.1", "minor", "2.0.0"), ("0.9.9", "minor", "0.10.0")],
)
def test_bump(start, part, expected):
    assert str(Version.parse(start).bump(part)) == expected


@pytest.mark.parametrize("text", ["1.2", "x.y.z", "1.2.3.4", "", "v", "-1.0.0", "1\u0661.0.0", "1.0.0\n",
                                  " 1.0.0", "1.0.\u0663", "01.0.0"])
def test_invalid_semver_is_a_usage_error(text):
    with pytest.raises(UsageError) as exc:
        Version.parse(text)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(
    "text,kind",
    [("fraud-detector@v1.2.3", "version"), ("fraud-detector@latest", "latest"), ("production", "env"),
     ("v1.2.3", "version")],
)
def test_parse_ref(text, kind):
    ref = parse_ref(text)
    assert {"version": ref.version is not None, "latest": ref.latest, "env": ref.env is not None}[kind]


@pytest.mark.parametrize("text", ["", "fraud-detector@1.2", "-fraud@v1.0.0", "fraud@vx", "Prod Env", "a..b"])
def test_malformed_ref_is_a_usage_error(text):
    with pytest.raises(UsageError):
        parse_ref(text)


_num = st.integers(min_value=0, max_value=10_000)
_ident = st.one_of(_num.map(str), st.from_regex(r"[a-zA-Z-][0-9a-zA-Z-]{0,6}", fullmatch=True))
_versions = st.builds(
    lambda a, b, c, pre: Version.parse(f"{a}.{b}.{c}" + (("-" + ".".join(pre)) if pre else "")),
    _num, _num, _num, st.lists(_ident, max_size=3),
)


@given(_versions)
def test_semver_roundtrips(v):
    assert Version.parse(str(v)) == v
    name = parse_tag(f"some-model@v{v}")
    assert name is not None and name.version == v


@given(_versions, _versions, _versions)
def test_semver_order_is_total_and_transitive(a, b, c):
    assert (a < b) + (b < a) + (a == b) == 1
    if a <= b and b <= c:
        assert a <= c


@given(_versions, st.sampled_from(["major", "minor", "patch"]))
def test_bump_always_increases(v, part):
    assert v.bump(part) > v


@given(st.text(max_size=30))
def test_parse_tag_never_crashes(text):
    name = parse_tag(text)
    assert name is None or name.tag == text or "+" in text


# -- against the libraries the ecosystem uses: semver (GTO's own) and gto's name rule ----------
@pytest.mark.parametrize("text", ["0.0.0", "1.2.3", "1.2.3-rc.1", "1.2.3-0.a.b-c", "1.0.0+build.5", "1.0.0-x+y",
                                  "10.20.30", "1.2.3-alpha.01", "1.2", "1.2.3.4", "1.2.3-", "01.2.3", "1.2.3+",
                                  "1.2.3-rc..1", "99999999999999999999.0.0"])
def test_semver_parsing_agrees_with_the_semver_library(text):
    import semver

    try:
        lib = semver.Version.parse(text)
    except ValueError:
        lib = None
    try:
        ours = Version.parse(text)
    except UsageError:
        ours = None
    assert (ours is None) == (lib is None), text
    if ours is not None:
        assert str(ours) == str(lib)


@given(_versions, _versions)
def test_semver_precedence_agrees_with_the_semver_library(a, b):
    import semver

    lib = semver.Version.parse(str(a)).compare(str(b))
    assert lib == (a > b) - (a < b)


@given(_versions, st.sampled_from(["major", "minor", "patch"]))
def test_bumps_agree_with_semver_next_version(v, part):
    import semver

    assert str(v.bump(part)) == str(semver.Version.parse(str(v)).next_version(part))
    assert v.bump(part) > v


@pytest.mark.parametrize("name", ["fraud-detector", "my_model", "Churn", "churn--v2", "a", "ab", "team/churn",
                                  "A_b-C", "-x", "x-", "_x", "x_", "a b", "a:b", "a@b", "a#b", "a.b", "", "é",
                                  "a/", "/a", "a\n", "1"])
def test_model_names_are_gtos_rule(name):
    from gto.constants import check_string_is_valid

    gto_ok = check_string_is_valid(name) and "\n" not in name
    ours = parse_tag(f"{name}@v1.0.0") is not None
    assert ours == gto_ok, name
    try:
        from tether.core.refs import check_model

        check_model(name)
        checked = True
    except UsageError:
        checked = False
    assert checked == gto_ok, name
