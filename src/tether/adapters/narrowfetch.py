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

from tether.adapters.gitrepo import Git


def head_release(git: Git, head: str) -> str | None:
    """The release the move at `head` names (its `Tether-Release` trailer), if tether made it."""
    out = git.out("log", "-1", "--format=%(trailers:key=Tether-Release,valueonly)", head).strip()
    return out.splitlines()[0].strip() if out else None


def fetch_release_tags(git: Git, remote: str, head: str | None, model: str, *, force: bool = False) -> None:
    """The tag the move at `head` names, else every release tag of `model`, from `remote` into
    the same names here. Without `force` a tag that differs from ours is refused (git will not
    clobber it: Git.fetch raises IntegrityError), as the all-tags fetch refused it."""
    plus = "+" if force else ""
    tag = head_release(git, head) if head else None
    if tag and git.fetch_optional(remote, f"{plus}refs/tags/{tag}:refs/tags/{tag}"):
        return
    git.fetch(remote, f"{plus}refs/tags/{model}@*:refs/tags/{model}@*")
