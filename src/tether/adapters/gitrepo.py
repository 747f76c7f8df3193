"""A narrow git adapter: plumbing commands turned into small typed objects.

`Git` is what callers use: the reads and the ref records here, with the log parsing of
`gitlog.GitLog` and the writes of `gitwrite.GitWrite` (refs move only by compare-and-swap
(`update-ref NEW OLD`); a lost race raises Conflict).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tether.adapters.cmd import run, run_bytes
from tether.adapters.gitlog import GitLog
from tether.adapters.gitwrite import GitWrite
from tether.errors import NotFound, UsageError


@dataclass(frozen=True)
class RefRecord:
    """One row of `git for-each-ref`: a tag or a branch, with the peeled commit for tags."""

    name: str  # full refname
    objecttype: str  # tag (annotated), commit (lightweight tag or branch)
    objectname: str  # tag object id for annotated tags, else commit id
    commit: str  # peeled commit
    tree: str  # peeled tree
    creator_date: str  # ISO-8601 of tagger (tags) or committer (commits)
    creator: str
    message: str  # tag message (annotated tags only)
    whole: bool = False  # `message` is the whole message although the read skipped messages (for_each_ref message_of)


# The armour lines git starts a tag signature with (gpg-interface.c): OpenPGP, X.509, SSH.
SIGNATURE_STARTS = ("-----BEGIN PGP SIGNATURE-----", "-----BEGIN SIGNED MESSAGE-----",
                    "-----BEGIN SSH SIGNATURE-----")


def strip_signature(message: str) -> str:
    """A tag message without the signature git appends to it, whatever the signing format."""
    cut = max((message.rfind("\n" + s) for s in SIGNATURE_STARTS), default=-1)
    if cut < 0 and message.startswith(SIGNATURE_STARTS):
        return ""
    return message[:cut + 1] if cut >= 0 else message


# A refname that can sit inside a for-each-ref format's `%(if:equals=…)` (no `)` or `%`).
_PLAIN_REF = re.compile(r"refs/tags/[A-Za-z0-9._@+/-]+")

_COMMON_DIRS: dict[Path, Path] = {}  # repository root -> its common git directory


class Git(GitLog, GitWrite):
    # -- plumbing -------------------------------------------------------------------------
    @staticmethod
    def discover(path: str | Path) -> "Git":
        """The repository `path` is in; its common git directory comes in the same process."""
        res = run(["git", "rev-parse", "--show-toplevel", "--git-common-dir"], cwd=path, check=False)
        lines = res.stdout.splitlines()
        if res.returncode != 0 or len(lines) != 2:
            raise UsageError(
                f"{Path(path).resolve()} is not inside a git repository",
                hint="run tether from a git repository that uses DVC (git init && dvc init)",
            )
        git = Git(lines[0])
        common = Path(lines[1])  # relative to the directory git ran in, symlinks resolved (getcwd)
        _COMMON_DIRS[git.root] = (common if common.is_absolute()  # fresh: replaces any remembered
                                  else Path(os.path.normpath(Path(path).resolve() / common)))
        return git

    def head(self) -> str:
        sha = self.rev_parse("HEAD")
        if sha is None:
            raise UsageError("the repository has no commits yet", hint="commit your pipeline first")
        return sha

    def current_branch(self) -> str | None:
        res = self.run("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return res.stdout.strip() or None

    def is_shallow(self) -> bool:
        return self.out("rev-parse", "--is-shallow-repository") == "true"

    def tree_of(self, rev: str) -> str:
        return self.out("rev-parse", rev + "^{tree}")

    def status_porcelain(self) -> list[str]:
        out = self.run("status", "--porcelain=v1", "--untracked-files=normal").stdout
        return [line for line in out.splitlines() if line]

    def show(self, rev: str, path: str) -> str:
        res = self.run("show", f"{rev}:{path}", check=False)
        if res.returncode != 0:
            raise NotFound(f"{path} does not exist at {rev[:12]}")
        return res.stdout

    def show_optional(self, rev: str, path: str) -> str:
        """The file at `rev`, or "" when it is not there."""
        res = self.run("show", f"{rev}:{path}", check=False)
        return res.stdout if res.returncode == 0 else ""

    def show_or_none(self, rev: str, path: str) -> str | None:
        """The file at `rev`, or None when it is not there (an empty file is "")."""
        res = self.run("show", f"{rev}:{path}", check=False)
        return res.stdout if res.returncode == 0 else None

    def raw_object(self, kind: str, oid: str) -> str:
        """`git cat-file KIND OID`: the object as git stores it (a tag with its signature)."""
        return self.run("cat-file", kind, oid).stdout

    def is_bare(self) -> bool:
        res = self.run("rev-parse", "--is-bare-repository", check=False)
        return res.returncode == 0 and res.stdout.strip() == "true"

    def names_in(self, rev: str, paths: list[str]) -> set[str]:
        """Which of `paths` (files or directories) the tree at `rev` holds."""
        if not paths:
            return set()
        found: set[str] = set()
        for args in (["-r", "-d"], ["-r"]):
            res = self.run("ls-tree", *args, "--name-only", rev, "--", *paths, check=False)
            found |= {p for p in res.stdout.split("\n") if p}
        return found

    def files_at(self, rev: str) -> list[str]:
        return self.run("ls-tree", "-r", "--name-only", rev).stdout.splitlines()

    def trees_of(self, revs: list[str]) -> dict[str, str]:
        """rev -> tree id, in one `git rev-parse`."""
        if not revs:
            return {}
        return dict(zip(revs, self.run("rev-parse", *[f"{r}^{{tree}}" for r in revs]).stdout.split()))

    def common_dir(self) -> Path:
        """The git directory worktrees share (`.git` of the main work tree): one rev-parse per
        repository and process (tether's caches under it are found by several modules)."""
        cached = _COMMON_DIRS.get(self.root)
        if cached is None:
            common = Path(self.out("rev-parse", "--git-common-dir"))
            cached = _COMMON_DIRS[self.root] = common if common.is_absolute() else self.root / common
        return cached

    def checkout(self, rev: str, *, detach: bool = False, force: bool = False) -> None:
        self.run("checkout", "--quiet", *(["--force"] if force else []), *(["--detach"] if detach else []), rev)

    def clone_no_checkout(self, url: str, dest: Path, hardlinks: bool = True) -> "Git":
        """`git clone --no-checkout URL DEST` (run from this directory), as a Git for DEST;
        `hardlinks=False` copies a local repository's objects instead of linking them."""
        self.run("clone", "--quiet", "--no-checkout", *([] if hardlinks else ["--no-hardlinks"]), url, str(dest))
        return Git(dest)

    def tag_names(self) -> list[str]:
        return self.run("tag", "--list").stdout.split()

    def archive(self, commit: str) -> bytes:
        """The commit's tree as a tar archive (`git archive`)."""
        return run_bytes(["git", "--no-replace-objects", "archive", "--format=tar", commit], self.root, b"")

    def ls_tree(self, rev: str, paths: list[str] | None = None) -> dict[str, tuple[str, str]]:
        """path -> (type, object id) for every entry under the given paths, recursively."""
        args = ["ls-tree", "-r", "-t", "-z", rev]
        if paths:
            args += ["--", *paths]
        out = self.run(*args).stdout
        entries = {}
        for rec in out.split("\0"):
            if not rec:
                continue
            meta, _, path = rec.partition("\t")
            _mode, otype, oid = meta.split()
            entries[path] = (otype, oid)
        return entries

    def is_ancestor(self, a: str, b: str) -> bool:
        return self.run("merge-base", "--is-ancestor", a, b, check=False).returncode == 0

    # -- refs -----------------------------------------------------------------------------
    _FIELDS = (
        "%(refname)",
        "%(objecttype)",
        "%(objectname)",
        "%(*objectname)",
        "%(tree)",
        "%(*tree)",
        "%(creatordate:iso-strict)",
        "%(if)%(taggername)%(then)%(taggername)%(else)%(committername)%(end)",
        "%(contents)",
        "%(contents:signature)",  # git's own split, so a signed tag's message parses (PGP, SSH, X.509)
    )

    def ref_listing(self, *patterns: str) -> str:
        """`<object id> <refname>` per matching ref: packed-refs alone, no object is opened."""
        return self.run("for-each-ref", "--format=%(objectname) %(refname)", *patterns).stdout

    def ref_targets(self, *patterns: str, listing: str | None = None) -> list[tuple[str, str]]:
        """(refname, object id) of every matching ref, from ref_listing (or the one given)."""
        out = self.ref_listing(*patterns) if listing is None else listing
        pairs = []
        for line in out.splitlines():
            oid, _, name = line.partition(" ")
            if name:
                pairs.append((name, oid))
        return pairs

    def for_each_ref(self, *patterns: str, messages: bool = True, first_line: bool = False,
                     message_of: str | None = None) -> list[RefRecord]:
        """Every matching ref with its peeled commit (and tag message), in ONE subprocess.
        messages=False leaves the message empty, or (first_line) its first line only; but the
        ref named `message_of` (a full refname) comes with its whole message, in the same read."""
        fields = self._FIELDS if messages else (*self._FIELDS[:-2], "%(contents:lines=1)" if first_line else "", "")
        if messages or first_line or not (message_of and _PLAIN_REF.fullmatch(message_of)):
            message_of = None
        else:  # git's own conditional: only that ref's message is printed
            only = f"%(if:equals={message_of})%(refname)%(then)"
            fields = (*fields[:-2], only + "%(contents)%(end)", only + "%(contents:signature)%(end)")
        fmt = "%00".join(fields) + "%00"
        out = self.run("for-each-ref", f"--format={fmt}", *patterns).stdout
        fields = out.split("\0")
        n = len(self._FIELDS)
        records = []
        for i in range(0, len(fields) - n + 1, n):
            name, otype, oname, peeled, tree, ptree, date, who, msg, sig = fields[i : i + n]
            if sig and msg.endswith(sig):
                msg = msg[: len(msg) - len(sig)]
            name = name.lstrip("\n")
            records.append(
                RefRecord(
                    name=name,
                    objecttype=otype,
                    objectname=oname,
                    commit=peeled or oname,
                    tree=ptree or tree,
                    creator_date=date,
                    creator=who,
                    message=msg if otype == "tag" else "",
                    whole=message_of is not None and name == message_of and otype == "tag",
                )
            )
        return records

    def tag_messages(self, tag_objects: list[str]) -> dict[str, str]:
        """tag_message of many tag objects, in one `git cat-file --batch` process."""
        out = {}
        for oid, raw in cat_files(self, tag_objects).items():
            if raw is not None:
                text = raw.decode(errors="replace")
                out[oid] = strip_signature(text.split("\n\n", 1)[1]) if "\n\n" in text else ""
        return out

    def tag_message(self, tag_object: str) -> str:
        raw = self.run("cat-file", "tag", tag_object).stdout
        return strip_signature(raw.split("\n\n", 1)[1]) if "\n\n" in raw else ""

    def ref(self, name: str) -> str | None:
        res = self.run("rev-parse", "--verify", "--quiet", name, check=False)
        return res.stdout.strip() or None


def cat_files(git: Git, specs: list[str]) -> dict[str, bytes | None]:
    """Many `rev:path` blobs in one `git cat-file --batch` process; None where missing."""
    if not specs:
        return {}
    out = run_bytes(["git", "--no-replace-objects", "cat-file", "--batch"], git.root,
                    ("\n".join(specs) + "\n").encode())
    pos, result = 0, {}  # type: tuple[int, dict[str, bytes | None]]
    for spec in specs:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].decode()
        pos = nl + 1
        if header.endswith(" missing") or header.endswith(" ambiguous"):
            result[spec] = None
            continue
        size = int(header.split()[2])
        result[spec] = out[pos : pos + size]
        pos += size + 1
    return result


def object_ids(git: Git, specs: list[str]) -> dict[str, str | None]:
    """Object ids of many `rev:path` in one `git cat-file --batch-check` process."""
    if not specs:
        return {}
    out = run_bytes(["git", "--no-replace-objects", "cat-file", "--batch-check=%(objectname)"], git.root,
                    ("\n".join(specs) + "\n").encode()).decode()
    result = {}
    for spec, line in zip(specs, out.splitlines()):
        result[spec] = None if line.endswith(" missing") or line.endswith(" ambiguous") else line.strip()
    return result
