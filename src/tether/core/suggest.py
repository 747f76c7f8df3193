""""Did you mean …?" for a mistyped environment, release or model. Pure."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` most likely misspells or shortens (`prod` → `production`), or None."""
    options = [c for c in dict.fromkeys(choices) if c != word]
    starts = [c for c in options if c.lower().startswith(word.lower())] if len(word) >= 2 else []
    if len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def hint(word: str, choices: Iterable[str], known: str) -> str:
    """`did you mean X? ` (when one is close) followed by `known` (e.g. "environments: a, b")."""
    near = closest(word, list(choices))
    return (f"did you mean {near}? " if near else "") + known
