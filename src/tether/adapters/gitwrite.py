"""Writing to git: objects (tags, commits), refs, and the remote.

Refs move only by compare-and-swap (`update-ref NEW OLD`); a lost race raises Conflict.
"""

from __future__ import annotations

from tether.adapters.cmd import CommandFailed
from tether.adapters.gitbase import ZERO, GitBase
from tether.errors import Conflict, StorageError, TetherError, UsageError


class GitWrite(GitBase):
    def delete_ref(self, name: str, old: str) -> bool:
        """Delete `name` only if it still points at `old` (compare-and-swap); False if it moved."""
        return self.run("update-ref", "-d", name, old, check=False).returncode == 0

    def update_ref(self, name: str, new: str, old: str | None, message: str) -> None:
        """Compare-and-swap: moves `name` to `new` only if it still points at `old`
        (None: only if it does not exist yet)."""
        res = self.run("update-ref", "-m", message, name, new, old or ZERO, check=False)
        if res.returncode != 0:
            raise Conflict(
                f"{short_ref(name)} moved while we worked (expected {(old or 'nothing')[:12]})",
                hint="someone else moved it; look at `tether history` and try again",
            )

    def update_refs(self, updates: list[tuple[str, str, str | None]], message: str) -> None:
        """Compare-and-swap of several refs as one transaction (`update-ref --stdin`: start,
        prepare, commit): every ref moves to its new value, or, when any no longer points at
        its old one (None: does not exist yet), none does."""
        lines = ["start", *(f"update {name} {new} {old or ZERO}" for name, new, old in updates), "prepare", "commit"]
        res = self.run("update-ref", "-m", message, "--stdin", input="\n".join(lines) + "\n", check=False)
        if res.returncode != 0:
            names = ", ".join(short_ref(name) for name, _n, _o in updates)
            raise Conflict(f"one of {names} moved while we worked: none of them was moved",
                           hint="someone else moved it; look at `tether history` and try again")

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

    # -- remotes --------------------------------------------------------------------------
    def remote_url(self, name: str = "origin") -> str | None:
        res = self.run("remote", "get-url", name, check=False)
        return res.stdout.strip() or None

    def remote_tag(self, remote: str, tag: str) -> str | None:
        """The object `remote` has for refs/tags/TAG (None: it has no such tag); StorageError
        when the remote cannot be reached."""
        res = self.run("ls-remote", "--tags", remote, f"refs/tags/{tag}", check=False)
        if res.returncode != 0:
            raise StorageError(f"cannot reach {remote}: {res.stderr.strip()[-300:]}")
        return res.stdout.split()[0] if res.stdout.strip() else None

    def fetch(self, remote: str, *refspecs: str) -> None:
        """Without git's automatic maintenance after the fetch (a `git maintenance run --auto`
        process each time: about 3 ms, a tenth of a patch deploy's two fetches); the next git
        command that runs it does the housekeeping. Older git ignores the setting."""
        try:
            self.run("-c", "maintenance.auto=false", "fetch", "--quiet", "--no-tags", remote, *refspecs)
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
