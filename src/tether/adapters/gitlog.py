"""Reading git history: first-parent logs parsed into LogEntry records (trailers as git parsed
them), and the signature verdicts git itself reaches for commits and tags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tether.adapters.gitbase import GitBase


@dataclass(frozen=True)
class LogEntry:
    commit: str
    parents: tuple[str, ...]
    tree: str
    date: str
    message: str
    trailers: dict[str, str]
    author: str = ""

    @property
    def subject(self) -> str:
        return self.message.strip().split("\n", 1)[0] if self.message.strip() else ""


def parse_trailers(block: str) -> dict[str, str]:
    """Trailers as git itself parsed them: the output of `%(trailers:only,unfold)`, one
    `Key: value` per line (git has found the trailer block, unfolded continuation lines and
    normalised `Key:value`). The last value of a repeated key wins."""
    out: dict[str, str] = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep and key and " " not in key:
            out[key] = value.strip()
    return out


class GitLog(GitBase):
    def first_parent_entries(self, new: str, stop: list[str]) -> list["LogEntry"]:
        """Commits on `new`'s first-parent line not reachable from `stop` (e.g. `^OLD`, `--not
        --all`), newest first, with parents, tree and trailers."""
        fmt = "%H%x00%P%x00%T%x00%(trailers:only,unfold)%x00"
        out = self.run("log", "--first-parent", f"--format={fmt}", new, *stop, "--").stdout.split("\0")
        return [LogEntry(out[i].strip(), tuple(out[i + 1].split()), out[i + 2], "", "", parse_trailers(out[i + 3]))
                for i in range(0, len(out) - 3, 4)]

    def trailers_first_parent(self, ref: str, limit: int = 500) -> list[dict[str, str]]:
        """The trailers of the newest `limit` first-parent commits of `ref`, newest first."""
        out = self.run("log", "--first-parent", "-n", str(limit), "--format=%(trailers:only,unfold)%x00", ref).stdout
        return [parse_trailers(block) for block in out.split("\0")]

    def log_first_parent(self, rev: str, stop_at: str | None = None) -> list[LogEntry]:
        """Newest first. One subprocess for the whole history (or for the part above
        `stop_at`: commits `rev` reaches and `stop_at` does not)."""
        fmt = "%H%x00%P%x00%T%x00%cI%x00%an <%ae>%x00%B%x00%(trailers:only,unfold)%x00"
        out = self.run("log", "--first-parent", f"--format={fmt}", rev, *([f"^{stop_at}"] if stop_at else []),
                       "--").stdout
        fields = out.split("\0")
        entries = []
        for i in range(0, len(fields) - 6, 7):
            sha, parents, tree, date, author, body, trailers = fields[i : i + 7]
            entries.append(
                LogEntry(
                    commit=sha.strip(),
                    parents=tuple(parents.split()),
                    tree=tree,
                    date=date,
                    message=body,
                    trailers=parse_trailers(trailers),
                    author=author,
                )
            )
        return entries

    def commit_signatures(self, revs: list[str], allowed_signers: Path | None,
                          max_count: int | None = None) -> dict[str, tuple[str, str, str]]:
        """commit -> (`%G?`, principal `%GS`, key `%GK`) for the first-parent commits of `revs`
        (the newest `max_count`), in ONE `git log` that has git itself verify each signature
        against the given allowed signers file."""
        conf = ["-c", f"gpg.ssh.allowedSignersFile={allowed_signers or os.devnull}"]
        limit = [f"--max-count={max_count}"] if max_count is not None else []
        out = self.run(*conf, "log", "--first-parent", *limit, "--format=%H%x00%G?%x00%GS%x00%GK%x00",
                       *revs, "--").stdout
        f = out.split("\0")
        return {f[i].strip(): (f[i + 1], f[i + 2], f[i + 3]) for i in range(0, len(f) - 3, 4)}

    def signatures_of(self, commits: list[str], allowed_signers: Path | None) -> dict[str, tuple[str, str, str]]:
        """The same verdicts for exactly these commits (no walk), in ONE `git log`."""
        if not commits:
            return {}
        conf = ["-c", f"gpg.ssh.allowedSignersFile={allowed_signers or os.devnull}"]
        out = self.run(*conf, "log", "--no-walk=unsorted", "--format=%H%x00%G?%x00%GS%x00%GK%x00",
                       *commits, "--").stdout
        f = out.split("\0")
        return {f[i].strip(): (f[i + 1], f[i + 2], f[i + 3]) for i in range(0, len(f) - 3, 4)}

    def verify_tag_raw(self, tag_object: str, allowed_signers: Path | None) -> tuple[int, str]:
        """`git verify-tag --raw` of one tag object: (exit status, what the signing tool said)."""
        res = self.run("-c", f"gpg.ssh.allowedSignersFile={allowed_signers or os.devnull}",
                       "verify-tag", "--raw", tag_object, check=False)
        return res.returncode, res.stderr + res.stdout
