"""The `tether://` URI: which git repository, and which environment or release of it, a pod serves.

KServe hands a storage initializer one string, the InferenceService's `storageUri` (a
`ClusterStorageContainer` claims every URI that starts with `tether://`). This module is that
string's grammar, both ways: :func:`parse_uri` and :func:`format_uri`. Pure; no I/O.

Grammar (one line each; the part after `#` is the ref, the query is optional)::

    tether:///abs/path/repo.git#production              git URL /abs/path/repo.git       (a path)
    tether://host[:port]/org/repo.git#production        git URL https://host[:port]/org/repo.git
    tether://user@host[:port]/org/repo.git#m@v1.2.0     git URL ssh://user@host[:port]/org/repo.git
    ...?model=fraud-detector&layout=kserve#production   options, before the `#` as RFC 3986 has it;
    ...#production?model=fraud-detector                 or after the ref, as issue 29 wrote it

* The ref after `#` is an environment name (`tether.core.refs.check_env`: the branch the pod
  follows) or a release tag `<model>@vX.Y.Z` (`tether.core.refs.parse_tag`, GTO's grammar: the
  immutable pin). `model@latest` and a bare `vX.Y.Z` are refused: one moves, the other names no
  model.
* A user part (`git@`) means SSH, its absence HTTPS; plain `http://` and any other transport are
  not expressible, so nothing after `tether://` can select git's `file://`, `ext::` or a
  `--upload-pack=` option. A password (`user:secret@`) is refused: a storageUri is readable by
  everyone who can read the InferenceService; credentials come from the pod's environment.
* SSH is written as `ssh://user@host/path`, an absolute path on the server. git's scp-like
  `user@host:org/repo.git` (a path relative to the user's home) is not the same repository on
  every server, so :func:`authority_of` refuses it rather than guess which one was meant.
* `model=NAME`: the model, when the ref is an environment and the repository has several (as
  `tether deploy --model`); with a release tag it may only repeat the tag's model.
* `layout=release` (the default) or `layout=kserve`: what lands at the destination. `release` is
  the serving directory `tether deploy --target DEST` makes (`current` -> `releases/<id>`, the
  whole verified tree: weights, code, params, threshold), which `tether serve --target DEST`
  serves: tether's own runtime. `kserve` is the artifact's files at the destination's root, the
  way KServe's built-in runtimes (kserve-sklearnserver, MLServer, Triton) look for a model; it
  gives up the rest of the tuple at serving time, so it must be asked for by name. The default is
  the layout that keeps the whole tuple.
* Characters: ASCII letters, digits and `._~+-` in path segments; no `%`-encoding (nothing a
  tether:// URI names needs it, and decoding would let `%2e%2e` through as `..`), no spaces or
  control characters, no empty, `.` or `..` segment, no `:` in the path. The scheme is lower
  case, as KServe's prefix match is case-sensitive.

Bad input raises `tether.errors.UsageError` naming what is wrong; nothing is ever guessed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from tether.core.refs import check_env, check_model, parse_tag
from tether.errors import UsageError

SCHEME = "tether://"
ENVIRONMENT, RELEASE = "environment", "release"
LAYOUTS = ("release", "kserve")
DEFAULT_LAYOUT = "release"
OPTIONS = ("model", "layout")

_SEGMENT = re.compile(r"[A-Za-z0-9._~+-]+")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_USER = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,63})")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_HINT = ("write tether:///abs/path/repo.git#ENV, tether://host/org/repo.git#ENV (HTTPS) or "
         "tether://git@host/org/repo.git#MODEL@vX.Y.Z (SSH), optionally with ?model=NAME")


@dataclass(frozen=True)
class TetherURI:
    """A parsed `tether://` URI. `git_url` is what to clone or fetch: an absolute path,
    `https://host/path` or `ssh://user@host/path`. `kind` is ENVIRONMENT or RELEASE; `name` the
    environment or the release tag; `model` the model (a release's own, or `?model=`, or None);
    `layout` one of LAYOUTS."""

    git_url: str
    kind: str
    name: str
    model: str | None = None
    layout: str = DEFAULT_LAYOUT

    def __str__(self) -> str:
        return format_uri(self)


def _bad(uri: str, why: str) -> UsageError:
    shown = uri if len(uri) <= 200 else uri[:200] + "..."
    return UsageError(f"{shown!r} is not a tether:// URI: {why}", hint=_HINT)


def _check_chars(uri: str) -> None:
    if not uri.isascii():
        raise _bad(uri, "it has non-ASCII characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in uri):
        raise _bad(uri, "it has spaces or control characters")
    if "%" in uri:
        raise _bad(uri, "percent-encoding is not accepted (nothing a tether:// URI names needs it)")
    if "\\" in uri:
        raise _bad(uri, "it has a backslash")


def _path(uri: str, path: str) -> str:
    """`/seg/seg...`: the repository's path, checked segment by segment."""
    if not path.startswith("/") or path == "/":
        raise _bad(uri, "no repository path after the host")
    for seg in path[1:].split("/"):
        if seg in ("", ".", ".."):
            raise _bad(uri, f"the path {path!r} has an empty, '.' or '..' segment")
        if not _SEGMENT.fullmatch(seg):
            raise _bad(uri, f"the path segment {seg!r} has characters outside letters, digits and '._~+-'")
    return path


def _host(uri: str, hostport: str) -> str:
    """`host[:port]`, a DNS name, an IPv4 address or a bracketed IPv6 address."""
    host, port = hostport, None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _bad(uri, "an IPv6 address opened with '[' is never closed")
        host, rest = hostport[: end + 1], hostport[end + 1:]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _bad(uri, f"{host!r} is not an IPv6 address") from None
        if rest:
            if not rest.startswith(":"):
                raise _bad(uri, f"unexpected {rest!r} after the IPv6 address")
            port = rest[1:]
    elif ":" in hostport:
        host, port = hostport.rsplit(":", 1)
        if not all(_LABEL.fullmatch(label) for label in host.split(".")) or len(host) > 253:
            raise _bad(uri, f"{host!r} is not a host name")
    elif not all(_LABEL.fullmatch(label) for label in host.split(".")) or len(host) > 253:
        raise _bad(uri, f"{hostport!r} is not a host name" if hostport else "no host")
    if port is not None and not (_PORT.fullmatch(port) and int(port) <= 65535):
        raise _bad(uri, f"{port!r} is not a port (1-65535)")
    return hostport


def _git_url(uri: str, rest: str) -> str:
    """The git URL of `rest`, the part between `tether://` and the options or ref."""
    if rest.startswith("/"):
        return _path(uri, rest)
    authority, slash, path = rest.partition("/")
    path = _path(uri, slash + path)
    if "@" in authority:
        user, _, hostport = authority.rpartition("@")
        if ":" in user:
            raise _bad(uri, "it carries a password; give credentials to the pod, never in the URI")
        if not _USER.fullmatch(user):
            raise _bad(uri, f"{user!r} is not a user name")
        return f"ssh://{user}@{_host(uri, hostport)}{path}"
    return f"https://{_host(uri, authority)}{path}"


def _options(uri: str, query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if key not in OPTIONS:
            raise _bad(uri, f"unknown option {key!r} (known: {', '.join(OPTIONS)})")
        if not eq or not value:
            raise _bad(uri, f"the option {key!r} has no value")
        if key in out:
            raise _bad(uri, f"the option {key!r} is given twice")
        out[key] = value
    return out


def _ref(uri: str, ref: str) -> tuple[str, str, str | None]:
    """(kind, name, the tag's model or None) of the part after `#`."""
    if not ref:
        raise _bad(uri, "nothing after '#': name an environment or a release tag MODEL@vX.Y.Z")
    if "@" in ref:
        tag = parse_tag(ref)
        if tag is None:
            raise _bad(uri, f"{ref!r} is not a release tag MODEL@vX.Y.Z (a moving ref such as @latest is "
                            "not a pin)")
        return RELEASE, ref, tag.model
    if ref.startswith("v") and ref[1:2].isdigit():
        raise _bad(uri, f"{ref!r} names a version but no model: write MODEL@{ref}")
    try:
        return ENVIRONMENT, check_env(ref), None
    except UsageError as e:
        raise _bad(uri, e.message) from None


def _split(uri: str) -> tuple[str, str, str]:
    """(location, query, ref) of a URI with its scheme checked; query "" when absent."""
    if not uri.startswith(SCHEME):
        if uri[: len(SCHEME)].lower() == SCHEME:
            raise _bad(uri, "write the scheme in lower case, 'tether://' (KServe matches it exactly)")
        raise _bad(uri, "it does not start with 'tether://'")
    body = uri[len(SCHEME):]
    location, hash_, ref = body.partition("#")
    if not hash_:
        raise _bad(uri, "no '#': name an environment or a release tag after '#'")
    if "#" in ref:
        raise _bad(uri, "more than one '#'")
    location, q1, before = location.partition("?")
    ref, q2, after = ref.partition("?")
    if q1 and q2:
        raise _bad(uri, "options both before and after the '#'; give them once")
    if (q1 and not before) or (q2 and not after):
        raise _bad(uri, "a '?' with no options after it")
    if "?" in before or "?" in after:
        raise _bad(uri, "more than one '?'")
    return location, before or after, ref


def parse_uri(uri: str) -> TetherURI:
    """The `tether://` URI `uri`, checked (see the module doc); UsageError if it is not one."""
    if not isinstance(uri, str):
        raise UsageError("a tether:// URI must be a string", hint=_HINT)
    _check_chars(uri)
    location, query, ref = _split(uri)
    git_url = _git_url(uri, location)
    options = _options(uri, query) if query else {}
    kind, name, tag_model = _ref(uri, ref)
    model = options.get("model")
    if model is not None:
        try:
            check_model(model)
        except UsageError as e:
            raise _bad(uri, e.message) from None
        if tag_model is not None and model != tag_model:
            raise _bad(uri, f"?model={model} contradicts the release tag {name}, a release of {tag_model}")
    layout = options.get("layout", DEFAULT_LAYOUT)
    if layout not in LAYOUTS:
        raise _bad(uri, f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    return TetherURI(git_url, kind, name, tag_model or model, layout)


def authority_of(git_url: str) -> str:
    """What follows `tether://` for `git_url` (an absolute path, `https://host/path` or
    `ssh://user@host/path`), up to the options. UsageError for anything else, git's scp-like
    `user@host:path` included (see the module doc)."""
    if git_url.startswith("/"):
        rest = git_url
    elif git_url.startswith("https://"):
        rest = git_url[len("https://"):]
        if "@" in rest.partition("/")[0]:
            raise UsageError(f"{git_url!r} carries a user name; over HTTPS give credentials to the pod, not the URL")
    elif git_url.startswith("ssh://"):
        rest = git_url[len("ssh://"):]
        if "@" not in rest.partition("/")[0]:
            raise UsageError(f"{git_url!r} names no user; write ssh://USER@HOST/PATH (e.g. git@)")
    elif re.fullmatch(r"[^/:@]+@[^/:]+:.+", git_url):
        raise UsageError(f"{git_url!r} is git's scp-like form, a path relative to the user's home on the server",
                         hint="write it as ssh://USER@HOST/ABSOLUTE/PATH (on GitHub or GitLab: "
                              "ssh://git@HOST/ORG/REPO.git)")
    else:
        raise UsageError(f"{git_url!r} is not a git URL a tether:// URI can carry",
                         hint="use an absolute path, https://HOST/PATH or ssh://USER@HOST/PATH")
    if parse_uri(f"{SCHEME}{rest}#probe").git_url != git_url:  # checks every part, as parse_uri does
        raise UsageError(f"{git_url!r} does not survive a round trip through a tether:// URI")
    return rest


def format_uri(u: TetherURI) -> str:
    """The canonical text of `u` (options before the `#`, `layout` only when not the default,
    `model` only when the ref does not already name it); parse_uri(format_uri(u)) == u."""
    options = []
    if u.model is not None and u.kind == ENVIRONMENT:
        options.append(f"model={u.model}")
    if u.layout != DEFAULT_LAYOUT:
        options.append(f"layout={u.layout}")
    query = "?" + "&".join(options) if options else ""
    text = f"{SCHEME}{authority_of(u.git_url)}{query}#{u.name}"
    if parse_uri(text) != u:
        raise UsageError(f"{u!r} cannot be written as a tether:// URI")
    return text


def release_uri(git_url: str, tag: str, layout: str = DEFAULT_LAYOUT) -> str:
    """The URI that pins the release `tag` of the repository at `git_url`: what an
    InferenceService's storageUri carries, so a pod restart cannot pick up another release."""
    name = parse_tag(tag)
    if name is None:
        raise UsageError(f"{tag!r} is not a release tag MODEL@vX.Y.Z", hint="e.g. fraud-detector@v1.2.0")
    return format_uri(TetherURI(git_url, RELEASE, tag, name.model, layout))
