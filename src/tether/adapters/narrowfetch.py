"""Fetching only the refs a release needs, so a host's git traffic does not grow with the
registry (issue 29 item 6). Used by `tether deploy` (deploy/source.py) and `tether kserve-init`
(deploy/pod_source.py).

git's protocol v2 sends each refspec's source as a `ref-prefix`: the remote advertises only the
refs under it. `refs/tags/*` makes it advertise every tag of every model (13,000 refs: about a
megabyte per fetch, and growing); `refs/tags/fraud-detector@v1.2.0` makes it advertise one. The
environment branch's head move names its release (the `Tether-Release` trailer), so after
fetching the branch we know the one tag to ask for; only a head committed outside tether (no
trailer) falls back to the model's release tags (`refs/tags/<model>@*`), so the caller's own
checks can still match the head's tree to a release, or refuse it.
"""

from __future__ import annotations

from tether.adapters.cmd import CommandFailed
from tether.adapters.gitlog import LogEntry
from tether.adapters.gitrepo import Git


def head_release(git: Git, head: str) -> str | None:
    """The release the move at `head` names (its `Tether-Release` trailer), if tether made it."""
    out = git.out("log", "-1", "--format=%(trailers:key=Tether-Release,valueonly)", head).strip()
    return out.splitlines()[0].strip() if out else None


def head_log(git: Git, ref: str) -> list[LogEntry]:
    """`ref`'s first-parent log, newest first, or [] when `ref` names no commit: the moves the
    registry reads for the environment (Registry.events_at takes them), read before the tag
    fetch because its head's `Tether-Release` trailer names the one tag to ask for."""
    try:
        return git.log_first_parent(ref)
    except CommandFailed:
        return []


def fetch_release_tags(git: Git, remote: str, head: str | None, model: str, *, force: bool = False,
                       tag: str | None = None) -> None:
    """The tag the move at `head` names (or `tag`, when the caller read the head's trailer), else
    every release tag of `model`, from `remote` into the same names here. Without `force` a tag
    that differs from ours is refused (git will not clobber it: Git.fetch raises IntegrityError),
    as the all-tags fetch refused it."""
    from tether.core.refs import parse_tag

    plus = "+" if force else ""
    if tag is None and head:
        tag = head_release(git, head)
    # a trailer is anybody's to write: only a release tag of this model, spelled as tether
    # spells it, becomes a refspec (never a glob, a second colon or another model's tag)
    name = parse_tag(tag) if tag else None
    if name is not None and name.model == model and str(name) == tag \
            and git.fetch_optional(remote, f"{plus}refs/tags/{tag}:refs/tags/{tag}"):
        return
    git.fetch(remote, f"{plus}refs/tags/{model}@*:refs/tags/{model}@*")
