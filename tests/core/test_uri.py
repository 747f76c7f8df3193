"""The tether:// URI grammar (tether.core.uri), as tables: what parses to what, what is refused
and why, and that formatting round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.uri import (ENVIRONMENT, RELEASE, TetherURI, authority_of, format_uri, parse_uri,
                             release_uri)
from tether.errors import UsageError

E, R = ENVIRONMENT, RELEASE


@pytest.mark.parametrize(
    "uri,git_url,kind,name,model,layout",
    [
        # the three forms of issue 29
        ("tether:///abs/path/repo.git#production", "/abs/path/repo.git", E, "production", None, "release"),
        ("tether://host/org/repo.git#production", "https://host/org/repo.git", E, "production", None, "release"),
        ("tether://git@host/org/repo.git#model@v1.2.0", "ssh://git@host/org/repo.git", R, "model@v1.2.0", "model",
         "release"),
        # hosts: dotted names, ports, IPv4, IPv6
        ("tether://git.example.com/ml/fraud.git#staging", "https://git.example.com/ml/fraud.git", E, "staging", None,
         "release"),
        ("tether://git.example.com:8443/ml/fraud.git#staging", "https://git.example.com:8443/ml/fraud.git", E,
         "staging", None, "release"),
        ("tether://git@git.example.com:2222/srv/fraud.git#canary", "ssh://git@git.example.com:2222/srv/fraud.git",
         E, "canary", None, "release"),
        ("tether://10.1.2.3/r.git#prod", "https://10.1.2.3/r.git", E, "prod", None, "release"),
        ("tether://[::1]:8080/r.git#prod", "https://[::1]:8080/r.git", E, "prod", None, "release"),
        ("tether://git@[fe80::1]/r.git#prod", "ssh://git@[fe80::1]/r.git", E, "prod", None, "release"),
        # a path without .git, a one-segment path, allowed punctuation
        ("tether://host/repo#prod", "https://host/repo", E, "prod", None, "release"),
        ("tether:///srv/git/fraud_detector-v2.git#prod", "/srv/git/fraud_detector-v2.git", E, "prod", None,
         "release"),
        ("tether:///srv/a~b+c#prod", "/srv/a~b+c", E, "prod", None, "release"),
        # options, before the '#' (RFC 3986) or after the ref (issue 29's spelling)
        ("tether://host/r.git?model=fraud-detector#production", "https://host/r.git", E, "production",
         "fraud-detector", "release"),
        ("tether://host/r.git#production?model=fraud-detector", "https://host/r.git", E, "production",
         "fraud-detector", "release"),
        ("tether://host/r.git?layout=kserve#production", "https://host/r.git", E, "production", None, "kserve"),
        ("tether://host/r.git?layout=release&model=m#production", "https://host/r.git", E, "production", "m",
         "release"),
        ("tether://host/r.git#m@v1.0.0?layout=kserve&model=m", "https://host/r.git", R, "m@v1.0.0", "m", "kserve"),
        # release tags: GTO's model names, pre-releases and build metadata
        ("tether://host/r.git#nlp/sentiment@v2.3.4", "https://host/r.git", R, "nlp/sentiment@v2.3.4",
         "nlp/sentiment", "release"),
        ("tether://host/r.git#m2@v1.9.0-rc.1", "https://host/r.git", R, "m2@v1.9.0-rc.1", "m2", "release"),
        ("tether://host/r.git#m@v1.0.0-alpha+build.7", "https://host/r.git", R, "m@v1.0.0-alpha+build.7", "m",
         "release"),
        # environment names: tether's branch rule
        ("tether://host/r.git#prod.eu-west_1", "https://host/r.git", E, "prod.eu-west_1", None, "release"),
    ],
)
def test_parses(uri, git_url, kind, name, model, layout):
    u = parse_uri(uri)
    assert u == TetherURI(git_url, kind, name, model, layout)
    assert parse_uri(format_uri(u)) == u


@pytest.mark.parametrize(
    "uri,why",
    [
        # not this scheme, or not written as KServe will match it
        ("", "does not start with"),
        ("s3://bucket/model", "does not start with"),
        ("file:///srv/repo.git#prod", "does not start with"),
        ("TETHER://host/r.git#prod", "lower case"),
        ("Tether://host/r.git#prod", "lower case"),
        ("tether:/host/r.git#prod", "does not start with"),
        # the ref
        ("tether://host/r.git", "no '#'"),
        ("tether://host/r.git#", "nothing after '#'"),
        ("tether://host/r.git#a#b", "more than one '#'"),
        ("tether://host/r.git#model@latest", "not a release tag"),
        ("tether://host/r.git#model@1.2.0", "not a release tag"),
        ("tether://host/r.git#model@v1.2", "not a release tag"),
        ("tether://host/r.git#@v1.2.0", "not a release tag"),
        ("tether://host/r.git#v1.2.0", "no model"),
        ("tether://host/r.git#Production", "not a valid environment"),
        ("tether://host/r.git#prod..x", "not a valid environment"),
        ("tether://host/r.git#prod.lock", "not a valid environment"),
        ("tether://host/r.git#-prod", "not a valid environment"),
        ("tether://host/r.git#../../etc", "not a valid environment"),
        ("tether://host/r.git#refs/heads/prod", "not a valid environment"),
        # the path: traversal, empties, characters
        ("tether:///srv/../etc/repo.git#prod", "'..' segment"),
        ("tether:///srv/./repo.git#prod", "'..' segment"),
        ("tether://host/org/../../r.git#prod", "'..' segment"),
        ("tether://host/..#prod", "'..' segment"),
        ("tether:////srv/repo.git#prod", "empty"),
        ("tether:///srv//repo.git#prod", "empty"),
        ("tether:///srv/repo.git/#prod", "empty"),
        ("tether:///#prod", "no repository path"),
        ("tether://host#prod", "no repository path"),
        ("tether://host/#prod", "no repository path"),
        ("tether:///srv/my repo.git#prod", "spaces"),
        ("tether://host/r.git#prod ", "spaces"),
        (" tether://host/r.git#prod", "spaces"),
        ("tether://host/r.git#prod\n", "spaces or control"),
        ("tether://host/r.git\t#prod", "spaces or control"),
        ("tether://host/r\x00.git#prod", "control"),
        ("tether://host/ré.git#prod", "non-ASCII"),
        ("tether://host/r.git#prоd", "non-ASCII"),  # a Cyrillic 'о'
        ("tether:///srv/%2e%2e/etc#prod", "percent-encoding"),
        ("tether://host/r%20x.git#prod", "percent-encoding"),
        ("tether://h%6fst/r.git#prod", "percent-encoding"),
        ("tether:///srv\\repo.git#prod", "backslash"),
        ("tether:///srv/r.git;rm -rf /#prod", "spaces"),
        ("tether:///srv/r.git;id#prod", "characters outside"),
        ("tether:///srv/$(id).git#prod", "characters outside"),
        ("tether:///srv/`id`.git#prod", "characters outside"),
        # injection through the location: other transports, options, credentials
        ("tether://file:///etc/passwd#prod", "empty"),
        ("tether://file:/etc/passwd#prod", "not a port"),
        ("tether:///file://etc/repo.git#prod", "characters outside"),
        ("tether:///srv/file:/repo.git#prod", "characters outside"),
        ("tether://ext::sh -c id/r.git#prod", "spaces"),
        ("tether://ext::sh/r.git#prod", "not a host name"),
        ("tether://--upload-pack=touch/r.git#prod", "not a host name"),
        ("tether://-oProxyCommand=id/r.git#prod", "not a host name"),
        ("tether://git@-oProxyCommand=id/r.git#prod", "not a host name"),
        ("tether://-oProxyCommand=id@host/r.git#prod", "not a user name"),
        ("tether://--upload-pack=x@host/r.git#prod", "not a user name"),
        ("tether://host-/r.git#prod", "not a host name"),
        ("tether://-host/r.git#prod", "not a host name"),
        ("tether://ho_st/r.git#prod", "not a host name"),
        ("tether://host./r.git#prod", "not a host name"),
        ("tether://user:secret@host/r.git#prod", "password"),
        ("tether://:secret@host/r.git#prod", "password"),
        ("tether://@host/r.git#prod", "not a user name"),
        ("tether://a@b@host/r.git#prod", "not a user name"),
        ("tether://host:/r.git#prod", "not a port"),
        ("tether://host:0/r.git#prod", "not a port"),
        ("tether://host:65536/r.git#prod", "not a port"),
        ("tether://host:22x/r.git#prod", "not a port"),
        ("tether://host:1:2/r.git#prod", "not a host name"),
        ("tether://[::1/r.git#prod", "never closed"),
        ("tether://[not-ip]/r.git#prod", "not an IPv6"),
        ("tether://[::1]x/r.git#prod", "unexpected"),
        # options
        ("tether://host/r.git?#prod", "no options"),
        ("tether://host/r.git#prod?", "no options"),
        ("tether://host/r.git?model=#prod", "no value"),
        ("tether://host/r.git?model#prod", "no value"),
        ("tether://host/r.git?models=m#prod", "unknown option"),
        ("tether://host/r.git?upload-pack=x#prod", "unknown option"),
        ("tether://host/r.git?model=a&model=b#prod", "given twice"),
        ("tether://host/r.git?model=a#prod?layout=kserve", "both before and after"),
        ("tether://host/r.git?model=a?layout=kserve#prod", "more than one '?'"),
        ("tether://host/r.git?layout=flat#prod", "unknown layout"),
        ("tether://host/r.git?layout=KSERVE#prod", "unknown layout"),
        ("tether://host/r.git?model=-x#prod", "not a valid model name"),
        ("tether://host/r.git?model=../x#prod", "not a valid model name"),
        ("tether://host/r.git?model=other#fraud@v1.0.0", "contradicts"),
    ],
)
def test_refuses(uri, why):
    with pytest.raises(UsageError) as e:
        parse_uri(uri)
    assert why in e.value.message
    assert e.value.hint  # every refusal says how to write one


def test_refuses_a_non_string():
    with pytest.raises(UsageError):
        parse_uri(None)  # type: ignore[arg-type]


def test_a_long_uri_is_shortened_in_the_message():
    with pytest.raises(UsageError) as e:
        parse_uri("tether://host/" + "a" * 5000)
    assert len(e.value.message) < 400


@pytest.mark.parametrize(
    "git_url,authority",
    [
        ("/srv/git/fraud.git", "/srv/git/fraud.git"),
        ("https://git.example.com/ml/fraud.git", "git.example.com/ml/fraud.git"),
        ("https://git.example.com:8443/ml/fraud.git", "git.example.com:8443/ml/fraud.git"),
        ("ssh://git@git.example.com/ml/fraud.git", "git@git.example.com/ml/fraud.git"),
        ("ssh://git@git.example.com:2222/ml/fraud.git", "git@git.example.com:2222/ml/fraud.git"),
    ],
)
def test_authority_of_a_git_url(git_url, authority):
    assert authority_of(git_url) == authority
    assert parse_uri(f"tether://{authority}#prod").git_url == git_url


@pytest.mark.parametrize(
    "git_url,why",
    [
        ("git@github.com:org/repo.git", "scp-like"),  # relative to the user's home: not guessed
        ("http://host/r.git", "not a git URL"),
        ("file:///srv/r.git", "not a git URL"),
        ("ext::sh -c id", "not a git URL"),
        ("relative/path.git", "not a git URL"),
        ("https://user@host/r.git", "user name"),
        ("https://user:token@host/r.git", "user name"),
        ("ssh://host/r.git", "names no user"),
        ("https://host/r.git/", "empty"),
        ("https://host/../r.git", "'..'"),
        ("/srv/my repo.git", "spaces"),
    ],
)
def test_authority_of_refuses(git_url, why):
    with pytest.raises(UsageError) as e:
        authority_of(git_url)
    assert why in e.value.message


def test_release_uri_pins_the_tag():
    assert release_uri("https://git.example.com/ml/fraud.git", "fraud-detector@v1.2.0") == \
        "tether://git.example.com/ml/fraud.git#fraud-detector@v1.2.0"
    assert release_uri("/srv/fraud.git", "fraud-detector@v1.2.0", layout="kserve") == \
        "tether:///srv/fraud.git?layout=kserve#fraud-detector@v1.2.0"
    u = parse_uri(release_uri("ssh://git@h/r.git", "nlp/sentiment@v2.0.0-rc.1"))
    assert (u.kind, u.name, u.model) == (RELEASE, "nlp/sentiment@v2.0.0-rc.1", "nlp/sentiment")
    for bad in ("production", "fraud-detector@latest", "fraud-detector@v1"):
        with pytest.raises(UsageError):
            release_uri("/srv/fraud.git", bad)
    with pytest.raises(UsageError):
        release_uri("/srv/fraud.git", "fraud-detector@v1.0.0", layout="flat")


def test_format_is_canonical():
    # the options move before the '#', the default layout and a release's own model are left out
    u = parse_uri("tether://host/r.git#m@v1.0.0?model=m&layout=release")
    assert format_uri(u) == "tether://host/r.git#m@v1.0.0"
    assert str(parse_uri("tether://host/r.git#prod?layout=kserve&model=m")) == \
        "tether://host/r.git?model=m&layout=kserve#prod"


def test_format_refuses_what_parse_would():
    for bad in (TetherURI("/srv/r.git", ENVIRONMENT, "Prod"), TetherURI("/srv/r.git", RELEASE, "m@latest"),
                TetherURI("/srv/r.git", "branch", "prod"), TetherURI("/srv/r.git", ENVIRONMENT, "prod", layout="x"),
                TetherURI("/srv/r.git", RELEASE, "m@v1.0.0", model="other"),
                TetherURI("git@h:r.git", ENVIRONMENT, "prod")):
        with pytest.raises(UsageError):
            format_uri(bad)


_seg = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789._~+-", min_size=1, max_size=12).filter(
    lambda s: s not in (".", ".."))
_env = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True).filter(lambda s: not s.startswith("v"))
_host = st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True)


@given(host=_host, user=st.sampled_from([None, "git", "deploy_bot"]), port=st.integers(1, 65535) | st.none(),
       path=st.lists(_seg, min_size=1, max_size=4), env=_env, model=st.sampled_from([None, "fraud-detector", "a/b"]),
       layout=st.sampled_from(["release", "kserve"]))
def test_round_trip(host, user, port, path, env, model, layout):
    hostport = host + (f":{port}" if port else "")
    git_url = f"ssh://{user}@{hostport}/" if user else f"https://{hostport}/"
    git_url += "/".join(path)
    u = TetherURI(git_url, ENVIRONMENT, env, model, layout)
    assert parse_uri(format_uri(u)) == u


@given(st.text(max_size=80))
def test_never_anything_but_a_usage_error(text):
    # whatever a pod's storageUri says, the answer is a TetherURI or a UsageError, never a crash
    try:
        u = parse_uri("tether://" + text)
    except UsageError:
        return
    assert u.git_url.startswith(("/", "https://", "ssh://"))
    assert ".." not in u.git_url.split("/")
