"""A narrow git adapter: plumbing commands turned into small typed objects.

Refs move only by compare-and-swap (`update-ref NEW OLD`); a lost race raises Conflict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tether.adapters.cmd import CommandFailed, run, run_bytes
from tether.errors import Conflict, NotFound, StorageError, TetherError, UsageError

ZERO = "0" * 40


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


# The armour lines git starts a tag signature with (gpg-interface.c): OpenPGP, X.509, SSH.
SIGNATURE_STARTS = ("-----BEGIN PGP SIGNATURE-----", "-----BEGIN SIGNED MESSAGE-----",
                    "-----BEGIN SSH SIGNATURE-----")


def strip_signature(message: str) -> str:
    """A tag message without the signature git appends to it, whatever the signing format."""
    cut = max((message.rfind("\n" + s) for s in SIGNATURE_STARTS), default=-1)
    if cut < 0 and message.startswith(SIGNATURE_STARTS):
        return ""
    return message[:cut + 1] if cut >= 0 else message


_COMMON_DIRS: dict[Path, Path] = {}  # repository root -> its common git directory


# Every git process reads objects as their ids name them: `git replace` refs (local, written by
# hand) never change what a commit, tag or tree means to tether, so a kept answer and a fresh one
# agree however replacements come and go.
NO_REPLACE = {"GIT_NO_REPLACE_OBJECTS": "1"}


class Git:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- plumbing -------------------------------------------------------------------------
    def run(self, *args: str, check: bool = True, input: str | None = None, env=None):
        return run(["git", *args], cwd=self.root, check=check, input=input, env={**NO_REPLACE, **(env or {})})

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()

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

    def rev_parse(self, rev: str) -> str | None:
        res = self.run("rev-parse", "--verify", "--quiet", rev + "^{object}", check=False)
        return res.stdout.strip() or None

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

    def first_parent_entries(self, new: str, stop: list[str]) -> list["LogEntry"]:
        """Commits on `new`'s first-parent line not reachable from `stop` (e.g. `^OLD`, `--not
        --all`), newest first, with parents, tree and trailers."""
        fmt = "%H%x00%P%x00%T%x00%(trailers:only,unfold)%x00"
        out = self.run("log", "--first-parent", f"--format={fmt}", new, *stop, "--").stdout.split("\0")
        return [LogEntry(out[i].strip(), tuple(out[i + 1].split()), out[i + 2], "", "", parse_trailers(out[i + 3]))
                for i in range(0, len(out) - 3, 4)]

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

    def remote_tag(self, remote: str, tag: str) -> str | None:
        """The object `remote` has for refs/tags/TAG (None: it has no such tag); StorageError
        when the remote cannot be reached."""
        res = self.run("ls-remote", "--tags", remote, f"refs/tags/{tag}", check=False)
        if res.returncode != 0:
            raise StorageError(f"cannot reach {remote}: {res.stderr.strip()[-300:]}")
        return res.stdout.split()[0] if res.stdout.strip() else None

    def delete_ref(self, name: str, old: str) -> bool:
        """Delete `name` only if it still points at `old` (compare-and-swap); False if it moved."""
        return self.run("update-ref", "-d", name, old, check=False).returncode == 0

    def trailers_first_parent(self, ref: str, limit: int = 500) -> list[dict[str, str]]:
        """The trailers of the newest `limit` first-parent commits of `ref`, newest first."""
        out = self.run("log", "--first-parent", "-n", str(limit), "--format=%(trailers:only,unfold)%x00", ref).stdout
        return [parse_trailers(block) for block in out.split("\0")]

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

    def for_each_ref(self, *patterns: str, messages: bool = True, first_line: bool = False) -> list[RefRecord]:
        """Every matching ref with its peeled commit (and tag message), in ONE subprocess.
        messages=False leaves the message empty, or (first_line) its first line only."""
        fields = self._FIELDS if messages else (*self._FIELDS[:-2], "%(contents:lines=1)" if first_line else "", "")
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

    def update_ref(self, name: str, new: str, old: str | None, message: str) -> None:
        """Compare-and-swap: moves `name` to `new` only if it still points at `old`
        (None: only if it does not exist yet)."""
        res = self.run("update-ref", "-m", message, name, new, old or ZERO, check=False)
        if res.returncode != 0:
            raise Conflict(
                f"{short_ref(name)} moved while we worked (expected {(old or 'nothing')[:12]})",
                hint="someone else moved it; look at `tether history` and try again",
            )

    def make_tag_object(self, name: str, commit: str, message: str, when: int | None = None) -> str:
        """An annotated tag object (no ref yet); `when` sets the tagger date (Unix seconds)."""
        ident = self.ident("GIT_COMMITTER_IDENT")
        if when is not None:
            ident = ident.rsplit(" ", 2)[0] + f" {int(when)} +0000"
        return self.run(
            "mktag",
            input=f"object {commit}\ntype commit\ntag {name}\ntagger {ident}\n\n{message}"
            + ("" if message.endswith("\n") else "\n"),
        ).stdout.strip()

    def create_tag(self, name: str, commit: str, message: str) -> str:
        """An annotated tag; refuses (Conflict) if the tag exists. Returns the tag object id."""
        tag_obj = self.run(
            "mktag",
            input=(
                f"object {commit}\ntype commit\ntag {name}\n"
                f"tagger {self.ident('GIT_COMMITTER_IDENT')}\n\n{message}"
                + ("" if message.endswith("\n") else "\n")
            ),
        ).stdout.strip()
        self.update_ref(f"refs/tags/{name}", tag_obj, None, f"tether: release {name}")
        return tag_obj

    def ident(self, var: str = "GIT_COMMITTER_IDENT") -> str:
        res = self.run("var", var, check=False)
        if res.returncode != 0:
            raise UsageError(
                "git does not know who you are",
                hint='set it with git config user.name "…" and git config user.email "…"',
            )
        return res.stdout.strip()

    def commit_tree(self, tree: str, parents: list[str], message: str, sign: bool = False) -> str:
        """A commit object (no ref moves); `sign` signs it with the user's configured git
        signing (`gpg.format`, `user.signingkey`), as `git commit -S` does."""
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        if not sign:
            return self.run(*args, input=message).stdout.strip()
        try:
            return self.run(*args, "-S", input=message).stdout.strip()
        except CommandFailed as exc:
            raise _signing_failed(exc) from None

    def create_signed_tag(self, name: str, commit: str, message: str) -> str:
        """A signed annotated tag made by `git tag -s` (OpenPGP, X.509 or SSH, whatever the user
        configured); refuses (Conflict) if the tag exists. Returns the tag object id."""
        if self.rev_parse(f"refs/tags/{name}") is not None:
            raise Conflict(f"tag {name} exists already", hint="releases never move; release another version")
        try:
            self.run("tag", "-s", "--cleanup=verbatim", "-F", "-", name, commit,
                     input=message + ("" if message.endswith("\n") else "\n"))
        except CommandFailed as exc:
            if "already exists" in exc.result.stderr:
                raise Conflict(f"tag {name} exists already (made meanwhile)",
                               hint="releases never move; release another version") from None
            raise _signing_failed(exc) from None
        return self.out("rev-parse", f"refs/tags/{name}")

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

    # -- remotes --------------------------------------------------------------------------
    def remote_url(self, name: str = "origin") -> str | None:
        res = self.run("remote", "get-url", name, check=False)
        return res.stdout.strip() or None

    def fetch(self, remote: str, *refspecs: str) -> None:
        try:
            self.run("fetch", "--quiet", "--no-tags", remote, *refspecs)
        except CommandFailed as exc:
            if "would clobber existing tag" in exc.result.stderr:
                from tether.errors import IntegrityError

                raise IntegrityError(
                    f"a release tag on '{remote}' differs from ours: it was moved or re-created",
                    hint="releases never change; find out who re-tagged, and restore the original",
                ) from None
            raise StorageError(f"cannot fetch from git remote '{remote}': {exc.message}") from exc

    def fetch_optional(self, remote: str, *refspecs: str) -> bool:
        """Fetch these refs in one round trip; False, with nothing fetched, if the remote lacks
        one that names no wildcard (git updates no ref when any source is missing)."""
        try:
            self.fetch(remote, *refspecs)
        except StorageError as exc:
            if "couldn't find remote ref" in exc.message:
                return False
            raise
        return True

    def push(self, remote: str, *refspecs: str) -> None:
        """A plain (fast-forward only) push; a rejection means someone else moved the ref."""
        res = self.run("push", "--porcelain", "--atomic", remote, *refspecs, check=False)
        if res.returncode == 0:
            return
        text = res.stdout + res.stderr
        if "pre-receive hook declined" in text:
            said = [ln.partition("remote: ")[2] for ln in text.splitlines() if "remote: tether: refused" in ln]
            from tether.errors import IntegrityError

            raise IntegrityError(f"the git remote '{remote}' refused the push: " + ("; ".join(said) or text.strip()[-300:]),
                                 hint="its pre-receive hook enforces tether's rules; nothing was updated there")
        if "rejected" in text or "non-fast-forward" in text or "fetch first" in text or "already exists" in text:
            raise Conflict(
                f"the git remote '{remote}' rejected the push: it moved since you last fetched",
                hint="someone else pushed first; fetch, look at `tether history`, and try again",
            )
        raise TetherError(f"git push to '{remote}' failed: {text.strip()[-400:]}")


def _signing_failed(exc: CommandFailed) -> UsageError:
    return UsageError(f"git could not sign: {exc.message}",
                      hint="configure git signing (SSH: git config gpg.format ssh && git config user.signingkey "
                           "~/.ssh/id_ed25519.pub; OpenPGP: git config user.signingkey KEYID); nothing was changed")


def short_ref(name: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/", "refs/remotes/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


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
