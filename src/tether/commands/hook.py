"""`tether hook pre-receive`: the server side of tether's invariants, for self-hosted git.

git runs the hook in the bare repository with one `<old> <new> <ref>` line per ref a push
updates, after the objects arrived (in quarantine) and before any ref moves; a non-zero exit
rejects the whole push. The rules come from the repository as it was BEFORE the push (its
policy branch's dvc.yaml and `.tether/allowed_signers`: the branch named at `hook install`,
else the branch HEAD names), never from what is being pushed, so a push cannot loosen the policy
that judges it. When that branch does not resolve, every push is refused (there is no rule to
judge it by, and accepting it would mean no rule at all). hook_policy reads that policy (and
installs the hook); this module judges each ref the push updates. Refused:

- moving or deleting a release tag `<model>@vX.Y.Z`;
- a release tag the policy says must be signed and is not (or by a key it does not allow),
  whose commit holds no usable pipeline for the model, or whose DVC objects are not on the DVC
  remote (checked when the hook is installed with `--dvc-repo`);
- deleting the policy branch;
- deleting an environment branch, or an update whose new first-parent chain does not pass
  through the old tip (append-only: the old tip must be the first parent of the oldest new move,
  so every earlier move stays on the first-parent chain `history` reads);
- an environment move (each new first-parent commit) without tether's trailers, with parents
  other than [the previous move, the release's commit] (a new branch: [the release's commit]),
  whose `Tether-Previous` is not the release the environment held before it, whose tag object is
  not the release's, whose tree is not the release's tree, or whose signature the policy rejects;
- under a signing policy, a GTO assignment/unassignment tag for an environment whose rule asks
  for signatures, or a model-wide GTO tag (deprecation, deregistration, a numbered registration),
  that is not signed by a signer the rule allows, unless it is the GTO tag a valid tether move in
  the same push names in its `Tether-Gto-Tag` trailer (and points at that move's release); and
  moving or deleting such a GTO tag;
- under `meta.tether.attestation`, an environment move whose release has no attestation signed by
  the committed key (it may arrive in the same push), and any push of `refs/notes/tether-attest`
  that deletes it, rewrites its history, or changes or removes an attestation
  (commands/hook_attest.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from tether.adapters.attestnotes import NOTES_REF
from tether.core import moves
from tether.adapters.dvccache import DvcCache
from tether.adapters.gitbase import ZERO
from tether.adapters.gitlog import LogEntry
from tether.adapters.gitrepo import Git
from tether.adapters.workspace import Workspace
from tether.commands.hook_policy import BareWorkspace, policy_ref
from tether.core import signpolicy
from tether.core.moves import ACTIONS
from tether.core.refs import parse_tag
from tether.errors import UsageError
from tether.registry import derive

REQUIRED_TRAILERS = moves.REQUIRED


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


def check_push(bare: Path, updates: list[Update], dvc_repo: Path | None = None,
               branch: str | None = None) -> list[Refusal]:
    """Every reason to refuse this push (empty: accept). NotFound when the policy branch does
    not resolve (the hook then refuses the push)."""
    git = Git(bare)
    ref = policy_ref(git, branch)
    ws = BareWorkspace(bare, git, ref)
    pushed_tags = {u.ref[len("refs/tags/"):]: u.new for u in updates if u.ref.startswith("refs/tags/")}
    branches = _env_branches(ws)
    with tempfile.TemporaryDirectory(prefix="tether-hook-") as tmp:
        signers = ws.signers_file(Path(tmp))
        out: list[Refusal] = []
        vouched: dict[str, tuple[str, str, str]] = {}  # GTO tag -> (model, env, release commit) of a good move
        gto_updates = []
        for u in updates:
            name = u.ref[len("refs/tags/"):] if u.ref.startswith("refs/tags/") else None
            if u.ref == ref and u.new == ZERO:
                out.append(Refusal(u.ref, "the hook reads tether's policy from this branch: refusing to delete it"))
            elif name is not None and parse_tag(name) is not None:
                out += _release_tag(ws, u, signers, dvc_repo)
            elif name is not None:
                gto_updates.append(u)
            elif u.ref == NOTES_REF:
                out += [Refusal(u.ref, why) for why in notes_problems(ws, u.old, u.new)]
            elif u.ref.startswith("refs/heads/") and u.ref[len("refs/heads/"):] in branches:
                model, env = branches[u.ref[len("refs/heads/"):]]
                moved = _env_branch(ws, u, model, env, signers, pushed_tags, vouched)
                out += moved or _attested(ws, u, model, env, {v.ref: v.new for v in updates})
        for u in gto_updates:
            out += _gto_tag(ws, u, signers, vouched)
        return out


def notes_problems(ws: BareWorkspace, old: str, new: str) -> list[str]:
    from tether.commands.hook_attest import notes_problems as problems

    return problems(ws, old, new)


def _attested(ws: BareWorkspace, u: Update, model: str, env: str, pushed: dict[str, str]) -> list[Refusal]:
    """meta.tether.attestation's rule on the environment's new head (commands/hook_attest.py)."""
    from tether.commands.hook_attest import attestation_problem

    if u.new == ZERO:
        return []
    head = _first_parent(ws.git, u.new, ["--max-count=1"])
    release = head[0].trailers.get(moves.RELEASE) if head else None
    why = attestation_problem(ws, model, env, release, pushed)
    return [Refusal(u.ref, f"move {u.new[:12]} {why}")] if why else []


def _env_branches(ws: Workspace) -> dict[str, tuple[str, str]]:
    out = {}
    for model in ws.models:
        for env in ws.environments(model):
            out[ws.branch(model, env)] = (model, env)
    return out


def _release_tag(ws: BareWorkspace, u: Update, signers: Path | None, dvc_repo: Path | None) -> list[Refusal]:
    from tether.registry import signing

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
    reader = derive.cache_reader(DvcCache(dvc_repo).cache_root()) if dvc_repo else (lambda _m: None)
    d = derive.derive_many(ws.git, [(commit, name.model)], reader, use_cache=False)[(commit, name.model)]
    if d.manifest is None:
        problems.append("its commit holds no usable pipeline for the model: " + "; ".join(d.problems))
    elif dvc_repo is not None:
        problems += _objects_on_remote(d.manifest, dvc_repo)
    return [Refusal(u.ref, p) for p in problems]


def _gto_rules(pol: signpolicy.Policy, t) -> list[tuple[str, signpolicy.Rule]]:
    """The rules a GTO tag answers to: its environment's for an (un)assignment; every active rule
    for a model-wide tag (a deprecation hides the model, a deregistration or a numbered
    registration changes which versions GTO shows)."""
    if t.stage is not None:
        return [(f"environment {t.stage}", pol.env(t.stage))]
    rules = [("releases", pol.releases), *((f"environment {e}", r) for e, r in pol.environments.items())]
    return [(what, r) for what, r in rules if r.require_signed or r.principals]


def _gto_tag(ws: BareWorkspace, u: Update, signers: Path | None,
             vouched: dict[str, tuple[str, str, str]]) -> list[Refusal]:
    from tether.core import gto
    from tether.registry import signing

    name = u.ref[len("refs/tags/"):]
    t = gto.parse_gto_tag(name)
    if t is None or t.model not in ws.models:
        return []  # not GTO's, or not a model this repository declares
    rules = [(w, r) for w, r in _gto_rules(signing.policy(ws, t.model), t) if r.require_signed or r.principals]
    if not rules:
        return []  # the policy asks nothing of this tag
    if u.old != ZERO:
        verb = "delete" if u.new == ZERO else "move"
        return [Refusal(u.ref, f"GTO tags are history under the signing policy: refusing to {verb} {name} "
                               f"(it is {u.old[:12]})")]
    otype = ws.git.out("cat-file", "-t", u.new)
    by_move = vouched.get(name)
    if by_move is not None and otype == "tag" and t.action == "assign" and (t.model, t.stage) == by_move[:2]:
        target = ws.git.raw_object("tag", u.new).split("\n", 1)[0].removeprefix("object ").strip()
        if target == by_move[2]:
            return []  # the GTO record of a move this push makes, which the policy accepted
    sig = signing.tag_signature(ws.git, u.new, otype == "tag", signers)
    for what, rule in rules:
        if why := signpolicy.judge(sig, rule):
            return [Refusal(u.ref, f"GTO tag {name} is {why} (the signing policy's rule for {what}); "
                                   "it would change what `gto show` and tether report")]
    return []


def _objects_on_remote(manifest: dict, dvc_repo: Path) -> list[str]:
    from tether.core import manifest as mf
    from tether.adapters.dvcstore import DvcStore

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
                pushed_tags: dict[str, str], vouched: dict[str, tuple[str, str, str]]) -> list[Refusal]:
    from tether.registry import signing

    if u.new == ZERO:
        return [Refusal(u.ref, f"environment branches are append-only: refusing to delete {env}")]
    if u.old != ZERO and not ws.git.is_ancestor(u.old, u.new):
        return [Refusal(u.ref, f"non-fast-forward update of {env}: its history is append-only")]
    # the new moves: what the push adds to the branch, down to what the server already has (and,
    # for a new branch, not the commits of release tags arriving in the same push)
    stop = [f"^{u.old}"] if u.old != ZERO else ["--not", "--all", *pushed_tags.values()]
    pushed = _first_parent(ws.git, u.new, stop)
    if not pushed or pushed[0].commit != u.new:  # a new branch at a commit some ref already has
        pushed = _first_parent(ws.git, u.new, ["--max-count=1"]) + pushed
    oldest = pushed[-1]
    if u.old != ZERO and (not oldest.parents or oldest.parents[0] != u.old):
        return [Refusal(u.ref, f"{env} is append-only: its old tip {u.old[:12]} must stay on the first-parent "
                               f"chain (the first parent of the oldest new move), but move {oldest.commit[:12]}'s "
                               f"first parent is {oldest.parents[0][:12] if oldest.parents else 'none'}; a merge "
                               "that leaves earlier moves beside the chain hides them from `history`")]
    rule = signing.policy(ws, model).env(env)
    sigs = signing.commit_signatures(ws.git, [u.new, *stop], signers)
    out = []
    previous = _Previous(ws, model, env, u.old)
    for i in range(len(pushed) - 1, -1, -1):  # oldest first: each move's previous is known
        e = pushed[i]
        first = i == len(pushed) - 1
        shape = _move_problem(ws, e, pushed_tags, new_branch=first and u.old == ZERO)
        whys = [shape] if shape else [
            signpolicy.judge(sigs.get(e.commit, signpolicy.UNSIGNED), rule, e.trailers.get(moves.APPROVER)),
            previous.problem(e, first)]
        out += [Refusal(u.ref, f"move {e.commit[:12]} {why}") for why in whys if why]
        previous.release = e.trailers.get(moves.RELEASE, "none")
    if not out:
        for e in pushed:
            if gto_tag := e.trailers.get(moves.GTO_TAG):
                vouched[gto_tag] = (model, env, e.parents[-1])
    return out


class _Previous:
    """What `Tether-Previous` must say: the release of the move before it on the first-parent
    chain ("none" before the first), or, for the oldest new move, the release the environment
    held on the server before the push as tether reads it (GTO's newer assignments included),
    which is what `promote` records."""

    def __init__(self, ws: BareWorkspace, model: str, env: str, old: str) -> None:
        self.ws, self.model, self.env, self.old = ws, model, env, old
        self.release = ws.git.trailers_first_parent(old, 1)[0].get(moves.RELEASE, "") if old != ZERO else "none"

    def problem(self, e: LogEntry, first: bool) -> str | None:
        said = e.trailers.get(moves.PREVIOUS, "")
        if said == self.release:
            return None
        allowed = {self.release} if self.release else set()
        if first and self.old != ZERO:
            from tether.registry.registry import Registry

            reg = Registry(self.ws, messages=False)
            at_old = reg.events_at(self.env, self.old, self.model)
            allowed |= {(at_old[0].release if at_old else "") or "none",
                        reg.live_release(self.model, self.env) or "none"}
        if first and self.old == ZERO:
            allowed |= {"none"}
        if said in allowed:
            return None
        want = " or ".join(sorted(repr(a) for a in allowed if a))
        return f"records Tether-Previous {said[:80]!r}, but the environment held {want} before it"


def _first_parent(git: Git, new: str, stop: list[str]) -> list[LogEntry]:
    return git.first_parent_entries(new, stop)


def _move_problem(ws: BareWorkspace, e: LogEntry, pushed_tags: dict[str, str], new_branch: bool = False) -> str | None:
    t = e.trailers
    missing = [k for k in REQUIRED_TRAILERS if not t.get(k)]
    if missing:
        return "lacks tether's trailers: " + ", ".join(missing)
    if t[moves.ACTION] not in ACTIONS:  # promote, rollback, a canary's weight
        return f"has an unknown Tether-Action {t[moves.ACTION][:40]!r}"
    tag = t[moves.RELEASE]
    tag_obj = pushed_tags.get(tag) or ws.git.ref(f"refs/tags/{tag}")
    if parse_tag(tag) is None or tag_obj is None:
        return f"names {tag[:80]!r}, which is no release tag here"
    if tag_obj != t[moves.TAG_OBJECT]:
        return f"records tag object {t[moves.TAG_OBJECT][:12]} but {tag} is {tag_obj[:12]}"
    commit = ws.git.out("rev-parse", f"{tag_obj}^{{commit}}")
    if e.tree != ws.git.tree_of(commit):
        return f"has a tree that is not {tag}'s tree"
    if len(e.parents) < 1 or e.parents[-1] != commit:
        return f"does not have {tag}'s commit as its last parent"
    want = 1 if new_branch else 2
    if len(e.parents) != want:
        shape = "[the release's commit]" if new_branch else "[the previous move, the release's commit]"
        return (f"has {len(e.parents)} parents; a move's parents are {shape}, so no earlier move can be "
                "left beside the first-parent chain")
    return None
