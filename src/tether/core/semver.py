"""SemVer 2.0.0: parsing, precedence and bumps, by the `semver` package (the library GTO uses),
wrapped in a small frozen value type tether can hash and sort fast. Pure; no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering

from tether.errors import UsageError

BUMPS = ("major", "minor", "patch")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "Version":
        body = text[1:] if text.startswith("v") else text
        # The library's grammar is semver.org's, but its `\d` also matches non-ASCII digits
        # ("1١.0.0" would be 11.0.0): a version is ASCII, or it is not a version.
        v = None
        if body.isascii() and body == body.strip():
            import semver as _semver  # here, not at import: a read answered from tether.refindex parses nothing

            try:
                v = _semver.Version.parse(body)
            except (ValueError, TypeError):
                v = None
        if v is None:
            raise UsageError(
                f"'{text}' is not a semantic version",
                hint="use MAJOR.MINOR.PATCH, e.g. 1.4.0 or 2.0.0-rc.1",
            )
        pre = tuple(v.prerelease.split(".")) if v.prerelease else ()
        build = tuple(v.build.split(".")) if v.build else ()
        return cls(v.major, v.minor, v.patch, pre, build)

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            s += "-" + ".".join(self.prerelease)
        if self.build:
            s += "+" + ".".join(self.build)
        return s

    def sort_key(self):
        # A version without pre-release ranks above any of its pre-releases; numeric
        # identifiers rank below alphanumeric ones and compare as numbers (semver.org §11).
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def __lt__(self, other: "Version") -> bool:
        return self.sort_key() < other.sort_key()

    def __eq__(self, other: object) -> bool:
        # Build metadata does not take part in precedence.
        return isinstance(other, Version) and self.sort_key() == other.sort_key()

    def __hash__(self) -> int:
        return hash(self.sort_key())

    def bump(self, part: str) -> "Version":
        """The next version with that part bumped, semver's `next_version`: a pre-release
        already names its release, so 1.2.0-rc.1 bumps to 1.2.0 by minor or patch and to
        2.0.0 by major; 1.2.3 bumps to 2.0.0, 1.3.0 or 1.2.4."""
        if part not in BUMPS:
            raise UsageError(f"unknown bump '{part}'", hint="use one of: major, minor, patch")
        import semver as _semver

        v = _semver.Version(self.major, self.minor, self.patch, ".".join(self.prerelease) or None).next_version(part)
        return Version(v.major, v.minor, v.patch)
