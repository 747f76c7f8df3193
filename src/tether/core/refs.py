"""The grammar of names: release tags `<model>@vX.Y.Z`, environment branches, and REF arguments.

GTO's grammar, so `gto show` reads our releases. Pure; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tether.errors import UsageError
from tether.core.semver import Version

# GTO's artifact-name rule (gto/constants.py `name`): ASCII letters, digits, `_`, `-` and `/`,
# starting and ending with a letter or digit. tests/core/test_grammar.py checks it against gto's own
# parser. `fullmatch`, not gto's `search(...$)`, so a trailing newline is no part of a name.
MODEL_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9/_-]*[a-zA-Z0-9])?")
_ENV = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
LATEST = "latest"


@dataclass(frozen=True)
class ReleaseName:
    model: str
    version: Version

    @property
    def tag(self) -> str:
        return f"{self.model}@v{self.version}"

    def __str__(self) -> str:
        return self.tag


def check_model(name: str) -> str:
    if not MODEL_RE.fullmatch(name):
        raise UsageError(
            f"'{name}' is not a valid model name",
            hint="GTO's rule: letters, digits, '_', '-' and '/', starting and ending with a letter or digit, "
                 "e.g. fraud-detector",
        )
    return name


def check_env(name: str) -> str:
    if not _ENV.match(name) or name.endswith(".lock") or ".." in name:
        raise UsageError(
            f"'{name}' is not a valid environment name",
            hint="use lowercase letters, digits, '.', '_' or '-', e.g. production",
        )
    return name


def parse_tag(tag: str) -> ReleaseName | None:
    """A tag name, or None if it is not a release tag (other tags live in the same repo)."""
    model, sep, ver = tag.rpartition("@")
    if not sep or not ver.startswith("v") or not MODEL_RE.fullmatch(model):
        return None
    try:
        return ReleaseName(model, Version.parse(ver[1:]))
    except UsageError:
        return None


@dataclass(frozen=True)
class RefArg:
    """What a user typed as REF: `model@vX.Y.Z`, `model@latest`, or an environment name."""

    model: str | None
    version: Version | None = None
    latest: bool = False
    env: str | None = None


def parse_ref(text: str) -> RefArg:
    text = text.strip()
    if not text:
        raise UsageError("empty REF", hint="give model@vX.Y.Z, model@latest, or an environment name")
    if "@" in text:
        model, _, ver = text.rpartition("@")
        check_model(model)
        if ver == LATEST:
            return RefArg(model=model, latest=True)
        if not ver.startswith("v"):
            raise UsageError(f"'{text}' is not a valid REF", hint="write the version as vX.Y.Z, e.g. fraud-detector@v1.2.0")
        return RefArg(model=model, version=Version.parse(ver[1:]))
    if text.startswith("v") and text[1:2].isdigit():
        return RefArg(model=None, version=Version.parse(text[1:]))
    return RefArg(model=None, env=check_env(text))


def release_dir_name(tag: str) -> str:
    """The directory a release tag is materialised in under DIR/releases/ (and its id in
    deploy.log): the tag with each `/` of a namespaced model name spelled `--`."""
    return tag.replace("/", "--")
