"""`tether hook post-receive`: the events a push brought, queued for the policy's webhooks.

git runs post-receive after every ref of the push moved, with the same `<old> <new> <ref>`
lines as pre-receive; whatever it does, the push has happened. It reads the policy branch as it
is now (the push may have changed it; the pre-receive hook judged that change), finds the
events the push added (tether.commands.events: the new first-parent commits of each
environment branch, new release tags, new GTO tags) and writes them to the outbox
(tether.adapters.webhook) for the detached deliverer. `install` writes the hook beside
pre-receive.
"""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

from tether.adapters.gitbase import ZERO
from tether.adapters.gitrepo import Git
from tether.commands.events import derive
from tether.commands.hook import Update
from tether.commands.hook_policy import BareWorkspace, policy_ref, write_hook
from tether.core import cloudevents as ce
from tether.core import gto
from tether.core.refs import parse_tag
from tether.errors import UsageError


def push_events(bare: Path, updates: list[Update], branch: str | None = None) -> list[tuple[str, dict]]:
    """(url, event) for every event this push brought, to every URL its model's policy names,
    oldest first."""
    git = Git(bare)
    ws = BareWorkspace(bare, git, policy_ref(git, branch))
    items: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="tether-events-") as tmp:
        signers = ws.signers_file(Path(tmp))
        for model in ws.models:
            urls = ce.policy(ws.settings(model).events).urls
            wanted = _keys(ws, model, updates) if urls else set()
            if wanted:
                items += [(url, f.event) for f in derive(ws, model, signers) if f.key in wanted for url in urls]
    return items


def _keys(ws: BareWorkspace, model: str, updates: list[Update]) -> set[tuple[str, ...]]:
    """What in git this push added for `model`, as derive's keys."""
    branches = {ws.branch(model, env): env for env in ws.environments(model)}
    out: set[tuple[str, ...]] = set()
    for u in updates:
        if u.new == ZERO:
            continue  # a deletion adds nothing (the pre-receive hook refuses the ones that matter)
        if u.ref.startswith("refs/tags/"):
            name = u.ref[len("refs/tags/"):]
            tag = parse_tag(name)
            if tag is not None and tag.model == model:
                out.add(("tag", name))
            elif (g := gto.parse_gto_tag(name)) is not None and g.model == model:
                out.add(("gto", name))
        elif u.ref.startswith("refs/heads/") and (env := branches.get(u.ref[len("refs/heads/"):])):
            since = [f"^{u.old}"] if u.old != ZERO else []
            for commit in ws.git.out("rev-list", "--first-parent", u.new, *since).split():
                out.add(("move", env, commit))
    return out


def hook_script(tether: list[str], secret: Path, branch: str) -> str:
    words = [*tether, "hook", "post-receive", "--secret-file", str(secret), "--policy-branch", branch]
    return ("#!/bin/sh\n# installed by `tether hook install --events-secret`: tether's events for the webhooks the "
            "policy names\nexec " + " ".join(f"'{w}'" for w in words) + "\n")


def check_secret(path: Path) -> bytes:
    """The shared secret: a file only its owner can read, not empty."""
    try:
        data = path.read_bytes().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise UsageError(f"cannot read the events secret {path}: {exc.strerror or exc}",
                         hint="write a random secret: head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE") from None
    if not data:
        raise UsageError(f"the events secret {path} is empty",
                         hint="write a random secret: head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"the events secret {path} can be read by others (mode {stat.S_IMODE(mode):o})",
                         hint=f"chmod 600 {path}")
    return data


def install(bare: Path, tether: list[str], secret: Path, branch: str, force: bool = False) -> Path:
    """Writes `hooks/post-receive` (atomically, mode 755)."""
    check_secret(secret)
    for p in (*tether, str(secret)):
        if "'" in p:
            raise UsageError(f"cannot install with a path containing a quote: {p}")
    return write_hook(bare, "post-receive", hook_script(tether, secret, branch), force,
                      ours="# installed by `tether hook install --events-secret`")
