"""`tether hook pre-receive`: the server side of tether's invariants, for self-hosted git.

git runs the hook in the bare repository with one `<old> <new> <ref>` line per ref a push
updates, after the objects arrived (in quarantine) and before any ref moves; a non-zero exit
rejects the whole push. The rules come from the repository as it was BEFORE the push (its
default branch's dvc.yaml and `.tether/allowed_signers`), never from what is being pushed, so
a push cannot loosen the policy that judges it. Refused:

- moving or deleting a release tag `<model>@vX.Y.Z`;
- a release tag the policy says must be signed and is not (or by a key it does not allow),
  whose commit holds no usable pipeline for the model, or whose DVC objects are not on the DVC
  remote (checked when the hook is installed with `--dvc-repo`);
- deleting an environment branch, or a non-fast-forward update of one;
- an environment move (each new first-parent commit) without tether's trailers, whose tag
  object is not the release's, whose tree is not the release's tree, or whose signature the
  policy rejects.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tether import derive, signpolicy
from tether.errors import UsageError
from tether.gitrepo import ZERO, Git, LogEntry
from tether.refs import parse_tag
from tether.registry import ACTIONS
from tether.workspace import Workspace, load_yaml

REQUIRED_TRAILERS = ("Tether-Action", "Tether-Release", "Tether-Tag-Object", "Tether-Previous",
                     "Tether-Approver", "Tether-Reason")


@dataclass(frozen=True)
class Update:
    old: str
    new: str
    ref: str


@dataclass(frozen=True)
class Refusal:
    ref: str
    why: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.why}"


def parse_updates(text: str) -> list[Update]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            raise UsageError(f"pre-receive: expected '<old> <new> <ref>', got {line[:80]!r}")
        out.append(Update(*parts))
    return out


class BareWorkspace(Workspace):
    """A bare repository read as a workspace: dvc.yaml and the allowed signers come from its
    default branch (HEAD) as it was before the push."""

    @cached_property
    def dvc_yaml(self) -> dict:
        text = self.git.show_or_none("HEAD", "dvc.yaml")
        return load_yaml(text) if text is not None else {}

    def signers_file(self, tmp: Path) -> Path | None:
        text = self.git.show_or_none("HEAD", signpolicy.ALLOWED_SIGNERS)
        if text is None:
            return None
        path = tmp / "allowed_signers"
        path.write_text(text)
        return path


def check_push(bare: Path, updates: list[Update], dvc_repo: Path | None = None) -> list[Refusal]:
    """Every reason to refuse this push (empty: accept)."""
    ws = BareWorkspace(bare, Git(bare))
    pushed_tags = {u.ref[len("refs/tags/"):]: u.new for u in updates if u.ref.startswith("refs/tags/")}
    branches = _env_branches(ws)
    with tempfile.TemporaryDirectory(prefix="tether-hook-") as tmp:
        signers = ws.signers_file(Path(tmp))
        out: list[Refusal] = []
        for u in updates:
            if u.ref.startswith("refs/tags/") and parse_tag(u.ref[len("refs/tags/"):]) is not None:
                out += _release_tag(ws, u, signers, dvc_repo)
            elif u.ref.startswith("refs/heads/") and u.ref[len("refs/heads/"):] in branches:
                model, env = branches[u.ref[len("refs/heads/"):]]
                out += _env_branch(ws, u, model, env, signers, pushed_tags)
        return out


def _env_branches(ws: Workspace) -> dict[str, tuple[str, str]]:
    out = {}
    for model in ws.models:
        for env in ws.environments(model):
            out[ws.branch(model, env)] = (model, env)
    return out


def _release_tag(ws: BareWorkspace, u: Update, signers: Path | None, dvc_repo: Path | None) -> list[Refusal]:
    from tether import signing

    tag = u.ref[len("refs/tags/"):]
    if u.old != ZERO:
        verb = "delete" if u.new == ZERO else "move"
        return [Refusal(u.ref, f"release tags never change: refusing to {verb} {tag} (it is {u.old[:12]})")]
    name = parse_tag(tag)
    assert name is not None
    if name.model not in ws.models:
        return []  # not a model this repository declares (yet): nothing to hold it to
    otype = ws.git.out("cat-file", "-t", u.new)
    commit = ws.git.out("rev-parse", f"{u.new}^{{commit}}")
    problems = []
    pol = signing.policy(ws, name.model)
    if signing.release_rule_active(pol):
        sig = signing.tag_signature(ws.git, u.new, otype == "tag", signers)
        if why := signpolicy.judge(sig, pol.releases):
            problems.append(f"the tag is {why}")
    reader = derive.cache_reader(Path(dvc_repo) / ".dvc/cache/files/md5") if dvc_repo else (lambda _m: None)
    d = derive.derive_many(ws.git, [(commit, name.model)], reader, use_cache=False)[(commit, name.model)]
    if d.manifest is None:
        problems.append("its commit holds no usable pipeline for the model: " + "; ".join(d.problems))
    elif dvc_repo is not None:
        problems += _objects_on_remote(d.manifest, dvc_repo)
    return [Refusal(u.ref, p) for p in problems]


def _objects_on_remote(manifest: dict, dvc_repo: Path) -> list[str]:
    from tether import manifest as mf
    from tether.dvcstore import DvcStore

    wanted = {e["md5"]: e["path"] for e in mf.dvc_objects(manifest)}
    store = DvcStore(dvc_repo)
    try:
        missing = store.missing_on_remote(wanted)
    finally:
        store.close()
    if missing:
        return ["not on the DVC remote: " + ", ".join(sorted(wanted[m] for m in missing))
                + " (dvc push, then push the tag again)"]
    return []


def _env_branch(ws: BareWorkspace, u: Update, model: str, env: str, signers: Path | None,
                pushed_tags: dict[str, str]) -> list[Refusal]:
    from tether import signing

    if u.new == ZERO:
        return [Refusal(u.ref, f"environment branches are append-only: refusing to delete {env}")]
    if u.old != ZERO and not ws.git.is_ancestor(u.old, u.new):
        return [Refusal(u.ref, f"non-fast-forward update of {env}: its history is append-only")]
    # the new moves: what the push adds to the branch, down to what the server already has (and,
    # for a new branch, not the commits of release tags arriving in the same push)
    stop = [f"^{u.old}"] if u.old != ZERO else ["--not", "--all", *pushed_tags.values()]
    moves = _first_parent(ws.git, u.new, stop)
    if not moves or moves[0].commit != u.new:  # a new branch at a commit some ref already has
        moves = _first_parent(ws.git, u.new, ["--max-count=1"]) + moves
    rule = signing.policy(ws, model).env(env)
    sigs = signing.commit_signatures(ws.git, [u.new, *stop], signers)
    out = []
    for e in moves:
        why = _move_problem(ws, e, pushed_tags) or signpolicy.judge(
            sigs.get(e.commit, signpolicy.UNSIGNED), rule, e.trailers.get("Tether-Approver"))
        if why:
            out.append(Refusal(u.ref, f"move {e.commit[:12]} {why}"))
    return out


def _first_parent(git: Git, new: str, stop: list[str]) -> list[LogEntry]:
    return git.first_parent_entries(new, stop)


def _move_problem(ws: BareWorkspace, e: LogEntry, pushed_tags: dict[str, str]) -> str | None:
    t = e.trailers
    missing = [k for k in REQUIRED_TRAILERS if not t.get(k)]
    if missing:
        return "lacks tether's trailers: " + ", ".join(missing)
    if t["Tether-Action"] not in ACTIONS:  # promote, rollback, a canary's weight
        return f"has an unknown Tether-Action {t['Tether-Action'][:40]!r}"
    tag = t["Tether-Release"]
    tag_obj = pushed_tags.get(tag) or ws.git.ref(f"refs/tags/{tag}")
    if parse_tag(tag) is None or tag_obj is None:
        return f"names {tag[:80]!r}, which is no release tag here"
    if tag_obj != t["Tether-Tag-Object"]:
        return f"records tag object {t['Tether-Tag-Object'][:12]} but {tag} is {tag_obj[:12]}"
    commit = ws.git.out("rev-parse", f"{tag_obj}^{{commit}}")
    if e.tree != ws.git.tree_of(commit):
        return f"has a tree that is not {tag}'s tree"
    if len(e.parents) < 1 or e.parents[-1] != commit:
        return f"does not have {tag}'s commit as its last parent"
    return None


def hook_script(tether: list[str], dvc_repo: Path | None) -> str:
    words = [*tether, "hook", "pre-receive", *(["--dvc-repo", str(dvc_repo)] if dvc_repo else [])]
    return ("#!/bin/sh\n# installed by `tether hook install`: tether's rules for releases and environments\n"
            "exec " + " ".join(f"'{w}'" for w in words) + "\n")


def install(bare: Path, tether: list[str], dvc_repo: Path | None, force: bool = False) -> Path:
    """Writes `hooks/pre-receive` (atomically, mode 755) calling this tether."""
    if not Git(bare).is_bare():
        raise UsageError(f"{bare} is not a bare repository", hint="install the hook where teams push (the server's bare repo)")
    git = Git(bare)
    for p in (*tether, *([str(dvc_repo)] if dvc_repo else [])):
        if "'" in p:
            raise UsageError(f"cannot install with a path containing a quote: {p}")
    hooks = Path(git.out("rev-parse", "--git-path", "hooks"))
    hooks = hooks if hooks.is_absolute() else bare / hooks
    path = hooks / "pre-receive"
    text = hook_script(tether, dvc_repo)
    if path.exists() and path.read_text() != text and not force:
        from tether.errors import Conflict

        raise Conflict(f"{path} exists and is not tether's", hint="merge it by hand, or pass --force to replace it")
    hooks.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(path)
    return path
