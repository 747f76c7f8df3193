"""Where `tether hook pre-receive` reads its rules, and installing it.

The rules come from the repository as it was BEFORE the push: its policy branch's dvc.yaml and
`.tether/allowed_signers` (the branch named at `hook install`, else the branch HEAD names), never
from what is being pushed. `hook install` resolves that branch once and writes it into the hook.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from tether.adapters.gitrepo import Git
from tether.adapters.workspace import Workspace
from tether.core.settings import load_yaml
from tether.core import signpolicy
from tether.errors import UsageError


class BareWorkspace(Workspace):
    """A bare repository read as a workspace: dvc.yaml and the allowed signers come from its
    policy branch as it was before the push."""

    def __init__(self, root: str | Path, git: Git, policy_ref: str = "HEAD") -> None:
        super().__init__(root, git)
        self.policy_ref = policy_ref

    @cached_property
    def dvc_yaml(self) -> dict:
        text = self.git.show_or_none(self.policy_ref, "dvc.yaml")
        return load_yaml(text) if text is not None else {}

    def signers_file(self, tmp: Path) -> Path | None:
        text = self.git.show_or_none(self.policy_ref, signpolicy.ALLOWED_SIGNERS)
        if text is None:
            return None
        path = tmp / "allowed_signers"
        path.write_text(text)
        return path


def policy_ref(git: Git, branch: str | None) -> str:
    """`refs/heads/BRANCH` (or, with no branch named, the branch HEAD names) when it resolves to
    a commit; NotFound otherwise: a hook with no policy to read must not judge by none."""
    from tether.errors import NotFound

    if branch is None:
        res = git.run("symbolic-ref", "-q", "HEAD", check=False)
        ref = res.stdout.strip()
        if res.returncode != 0 or not ref.startswith("refs/heads/"):
            raise NotFound(f"{git.root}: HEAD names no branch, so there is no default branch to read the policy from",
                           hint="name the branch that holds dvc.yaml: tether hook install BARE --branch main")
        where = f"HEAD names {ref[len('refs/heads/'):]!r}, which"
    else:
        if git.run("check-ref-format", "--branch", branch, check=False).returncode != 0 or "'" in branch:
            raise UsageError(f"--branch {branch!r} is not a branch name",
                             hint="name the branch that holds dvc.yaml and .tether/, e.g. --branch main")
        ref, where = f"refs/heads/{branch}", f"branch {branch!r}"
    if git.rev_parse(f"{ref}^{{commit}}") is None:
        have = [r for r in git.run("for-each-ref", "--format=%(refname:short)", "refs/heads/").stdout.split()]
        likely = [b for b in ("main", "master", "trunk") if b in have] or (have if len(have) == 1 else ["BRANCH"])
        raise NotFound(f"{git.root}: {where} does not exist, so the hook has no policy to read",
                       hint="name the branch that holds dvc.yaml and .tether/: tether hook install BARE --branch "
                            + likely[0] + (f" (branches: {', '.join(have[:8])})" if have else " (push it first)"))
    return ref


def hook_script(tether: list[str], dvc_repo: Path | None, branch: str | None = None) -> str:
    words = [*tether, "hook", "pre-receive", *(["--dvc-repo", str(dvc_repo)] if dvc_repo else []),
             *(["--policy-branch", branch] if branch else [])]
    return ("#!/bin/sh\n# installed by `tether hook install`: tether's rules for releases and environments\n"
            "exec " + " ".join(f"'{w}'" for w in words) + "\n")


def install_branch(bare: Path, branch: str | None) -> str:
    """The branch the hook will read its policy from: the one named, else the one HEAD names.
    NotFound when it does not resolve or its dvc.yaml declares no model (the hook would have no
    rule to judge a push by)."""
    from tether.errors import NotFound

    git = Git(bare)
    ref = policy_ref(git, branch)
    name = ref[len("refs/heads/"):]
    ws = BareWorkspace(bare, git, ref)
    try:
        models = ws.models
    except UsageError as exc:
        raise NotFound(f"{bare}: branch {name!r} has a dvc.yaml tether cannot read: {exc}",
                       hint="fix dvc.yaml on that branch, or name another with --branch") from None
    if not models:
        raise NotFound(f"{bare}: branch {name!r} has no dvc.yaml declaring a model artifact, so the hook would "
                       "have no rule to judge a push by",
                       hint="push the branch that holds dvc.yaml first, or name it with --branch")
    return name


def install(bare: Path, tether: list[str], dvc_repo: Path | None, force: bool = False,
            branch: str | None = None) -> tuple[Path, str]:
    """Writes `hooks/pre-receive` (atomically, mode 755) calling this tether with the policy
    branch it resolved (the one named, else HEAD's); returns the path and that branch."""
    if not Git(bare).is_bare():
        raise UsageError(f"{bare} is not a bare repository", hint="install the hook where teams push (the server's bare repo)")
    for p in (*tether, *([str(dvc_repo)] if dvc_repo else [])):
        if "'" in p:
            raise UsageError(f"cannot install with a path containing a quote: {p}")
    name = install_branch(bare, branch)
    path = write_hook(bare, "pre-receive", hook_script(tether, dvc_repo, name), force,
                      ours="# installed by `tether hook install`")
    return path, name


def write_hook(bare: Path, hook: str, text: str, force: bool, ours: str) -> Path:
    """Writes `hooks/<hook>` atomically, mode 755. A hook that is not tether's (its second line
    is not `ours`) is replaced only with force."""
    git = Git(bare)
    hooks = Path(git.out("rev-parse", "--git-path", "hooks"))
    hooks = hooks if hooks.is_absolute() else bare / hooks
    path = hooks / hook
    if path.exists() and path.read_text() != text and not force and not _is_ours(path.read_text(), ours, hook):
        from tether.errors import Conflict

        raise Conflict(f"{path} exists and is not tether's", hint="merge it by hand, or pass --force to replace it")
    hooks.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def _is_ours(text: str, ours: str, hook: str) -> bool:
    """A hook an earlier `tether hook install` wrote (re-installing it, e.g. to add the policy
    branch, replaces it)."""
    lines = text.splitlines()
    return (len(lines) == 3 and lines[1].startswith(ours)
            and lines[2].startswith("exec ") and f"'hook' '{hook}'" in lines[2])
