"""The summary cache (`.git/tether/summary.json`): what `list` prints of each release
({tag, commit, complete, problem, kind, metrics}), kept by the tag's object id (the commit for a
lightweight tag), which fixes both the message and the commit, so an entry can never describe
another tag. Only summaries of fully derived releases are stored (Registry.summaries)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tether.adapters.gitrepo import Git

if TYPE_CHECKING:
    from tether.registry.release import Release

# v2: summaries of derivations from verified objects only (derive.DERIVE_VERSION 2)
# v3: with the release note (the tag message's text before its manifest)
VERSION = 3


def summary_path(git: Git) -> Path:
    from tether.registry import derive

    return derive.cache_dir(git).parent / "summary.json"


def summary_of(rel: Release) -> dict:
    """The entry `list` prints for a release (read from its derivation)."""
    return {"tag": rel.tag, "commit": rel.commit, "complete": rel.problem is None,
            "problem": rel.problem, "kind": rel.problem_kind,
            "metrics": (rel.manifest or {}).get("metrics") or {}, "note": rel.note}


class SummaryCache:
    """The file, read once on first use and written whole (atomically) when entries are added."""

    def __init__(self, git: Git) -> None:
        self.git = git
        self._entries: dict | None = None  # tag object -> entry, once read

    def entries(self) -> dict:
        if self._entries is None:
            try:
                raw = json.loads(summary_path(self.git).read_text())
                data = raw.get("entries", {}) if raw.get("v") == VERSION else {}
            except (OSError, ValueError, AttributeError):
                data = {}
            self._entries = data if isinstance(data, dict) else {}
        return self._entries

    def hit(self, rel: Release, *, same_tag: bool = True) -> dict | None:
        """The kept entry of `rel`, if it was kept for its commit (and, unless same_tag=False,
        under its tag name)."""
        h = self.entries().get(rel.tag_object)
        if isinstance(h, dict) and h.get("commit") == rel.commit and (not same_tag or h.get("tag") == rel.tag):
            return h
        return None

    def add(self, fresh: dict[str, dict]) -> None:
        """Keep `fresh` ({tag object: entry}) with the entries read, and write the file."""
        if not fresh:
            return
        path = summary_path(self.git)
        cache = self.entries()
        cache.update(fresh)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"v": VERSION, "entries": cache}))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only .git only costs time
