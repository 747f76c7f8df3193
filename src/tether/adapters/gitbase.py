"""The one way tether runs git: a repository's root, and every process reading objects as their
ids name them. `gitrepo.Git` (reads, refs) builds on it with `gitlog.GitLog` (log parsing,
signatures) and `gitwrite.GitWrite` (writes, compare-and-swap, the remote)."""

from __future__ import annotations

from pathlib import Path

from tether.adapters.cmd import run

ZERO = "0" * 40


# Every git process reads objects as their ids name them: `git replace` refs (local, written by
# hand) never change what a commit, tag or tree means to tether, so a kept answer and a fresh one
# agree however replacements come and go.
NO_REPLACE = {"GIT_NO_REPLACE_OBJECTS": "1"}


class GitBase:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run(self, *args: str, check: bool = True, input: str | None = None, env=None):
        return run(["git", *args], cwd=self.root, check=check, input=input, env={**NO_REPLACE, **(env or {})})

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

    def rev_parse(self, rev: str) -> str | None:
        res = self.run("rev-parse", "--verify", "--quiet", rev + "^{object}", check=False)
        return res.stdout.strip() or None
