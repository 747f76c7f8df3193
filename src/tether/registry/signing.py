"""Signatures on releases and environment moves, verified by git against the committed policy.

`tether release --sign` makes a signed annotated tag and `promote/rollback --sign` a signed
environment commit, with the user's own git signing configuration. Every command that acts on
an environment (check, promote, rollback, history, deploy) asks `env_verdicts` and refuses
(exit 6, naming the commit) a move the policy rejects: unsigned where a signature is required,
signed by a key or principal not allowed there, or an approver trailer that names someone other
than the signer.

History from before the policy is kept as it was: moves older than the oldest move that
satisfies the policy are reported (signer or "unsigned") but are not errors. Every move after
the first good one must satisfy it, and so must the live one for check, history and deploy
(a promote or rollback may put the first signed move on top of an unsigned past).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tether.core import signpolicy as sp
from tether.errors import IntegrityError
from tether.adapters.gitrepo import SIGNATURE_STARTS, Git
from tether.adapters.workspace import Workspace

if TYPE_CHECKING:  # annotations only: `history`'s read path needs no registry
    from tether.core.moves import Event
    from tether.registry.release import Release


class Histories(Protocol):
    """What the verdicts read of the registry (tether.registry.registry.Registry): an
    environment's moves, newest first. A protocol, not the class: the registry asks this module
    about GTO's tags, so this module never imports it."""

    def history(self, model: str, env: str) -> list[Event]: ...


@dataclass(frozen=True)
class Verdict:
    commit: str
    signature: sp.Signature
    problem: str | None  # why the policy rejects the move (None: accepted)
    enforced: bool  # False for history from before the first move that satisfies the policy

    def as_dict(self) -> dict:
        return {**self.signature.as_dict(), "problem": self.problem, "enforced": self.enforced}


def allowed_signers(ws: Workspace, override: Path | None = None) -> Path | None:
    """The allowed signers file: a host's own (deploy --allowed-signers) or the repository's
    committed `.tether/allowed_signers`."""
    if override is not None:
        return override
    path = ws.root / sp.ALLOWED_SIGNERS
    return path if path.is_file() else None


def policy(ws: Workspace, model: str) -> sp.Policy:
    return sp.parse(ws.settings(model).signing)


def tag_signature(git: Git, tag_object: str, annotated: bool, signers: Path | None) -> sp.Signature:
    """git's verdict on a release tag's signature (a lightweight tag is unsigned)."""
    if not annotated:
        return sp.UNSIGNED
    raw = git.raw_object("tag", tag_object)
    if not any(start in raw for start in SIGNATURE_STARTS):
        return sp.UNSIGNED
    code, said = git.verify_tag_raw(tag_object, signers)
    return sp.parse_raw(said, code)


def release_problem(git: Git, rel: Release, pol: sp.Policy, signers: Path | None) -> str | None:
    return sp.judge(tag_signature(git, rel.tag_object, rel.annotated, signers), pol.releases)


def release_rule_active(pol: sp.Policy) -> bool:
    return pol.releases.require_signed or bool(pol.releases.principals)


def check_new_tag(ws: Workspace, model: str, tag: str, tag_object: str) -> None:
    """A release tag `release --sign` just made, judged before it is pushed."""
    pol = policy(ws, model)
    sig = tag_signature(ws.git, tag_object, True, allowed_signers(ws))
    if problem := sp.judge(sig, pol.releases):
        raise IntegrityError(f"the new tag {tag} would be {problem}",
                             hint="sign with a key .tether/allowed_signers lists for a principal "
                                  "meta.tether.signing.releases allows")


def commit_signatures(git: Git, revs: list[str], signers: Path | None,
                      max_count: int | None = None) -> dict[str, sp.Signature]:
    return {c: sp.Signature(st, who, key) if st != "N" else sp.UNSIGNED
            for c, (st, who, key) in git.commit_signatures(revs, signers, max_count).items()}


def known_signatures(git: Git, commits: list[str], signers: Path | None) -> dict[str, sp.Signature]:
    """git's verdicts on these commits, remembered under `.git/tether/signatures/` per allowed
    signers file (by its SHA-256): a commit never changes, and an SSH verdict depends only on
    the commit and that file (git verifies at the commit's own time). OpenPGP verdicts depend on
    the keyring, so they are asked afresh every time."""
    import hashlib
    import json
    import os

    from tether.registry.derive import cache_dir

    digest = hashlib.sha256(signers.read_bytes()).hexdigest() if signers is not None else "none"
    path = cache_dir(git).parent / "signatures" / f"{digest}.json"
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    todo = [c for c in dict.fromkeys(commits) if c not in cache]
    fresh = git.signatures_of(todo, signers)
    keep = {c: v for c, v in fresh.items() if v[0] == "N" or v[2].startswith("SHA256:")}
    if keep:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**cache, **keep}))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only .git only costs time
    both = {**{c: tuple(v) for c, v in cache.items()}, **fresh}
    return {c: sp.Signature(*both[c]) if both[c][0] != "N" else sp.UNSIGNED for c in commits if c in both}


def judge_event(ev: Event, sig: sp.Signature, rule: sp.Rule) -> str | None:
    if ev.source == "outside" and (rule.require_signed or rule.principals):
        return "committed outside tether (no Tether-* trailers), where moves must be signed"
    return sp.judge(sig, rule, ev.approver if ev.source == "tether" else None)


def env_verdicts(ws: Workspace, reg: Histories, model: str, env: str, signers: Path | None,
                 pol: sp.Policy | None = None, events: list[Event] | None = None,
                 head: bool = True, remembered: bool = False) -> list[Verdict]:
    """One verdict per branch move of the environment, newest first (GTO's tags carry no
    signature and are not judged). One `git log` verifies them all. `head=False` (a move about
    to be made on top) lets an environment whose whole history predates the policy take its
    first signed move. `remembered`: verdicts kept under .git/tether/signatures may answer
    (`history`, a read); a command that enforces the policy (deploy, promote, rollback, check)
    has git verify every move afresh, since a file under .git/ is anybody's to write."""
    pol = pol or policy(ws, model)
    events = [e for e in (events if events is not None else reg.history(model, env)) if e.source != "gto"]
    if not events:
        return []
    commits = [e.commit for e in events]
    sigs = known_signatures(ws.git, commits, signers) if remembered else {
        c: sp.Signature(*v) if v[0] != "N" else sp.UNSIGNED for c, v in ws.git.signatures_of(commits, signers).items()}
    rule = pol.env(env)
    raw = [(ev, sigs.get(ev.commit, sp.UNSIGNED)) for ev in events]
    problems = [judge_event(ev, sig, rule) for ev, sig in raw]
    oldest_good = max((i for i, p in enumerate(problems) if p is None and raw[i][0].source == "tether"), default=-1)
    out = []
    for i, ((ev, sig), problem) in enumerate(zip(raw, problems)):
        out.append(Verdict(ev.commit, sig, problem, enforced=(head and i == 0) or i <= oldest_good))
    return out


def violations(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.problem and v.enforced]


def refuse(env: str, bad: list[Verdict], what: str = "") -> IntegrityError:
    v = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return IntegrityError(
        f"{env}: move {v.commit[:12]} {v.problem}{more}" + (f"; {what}" if what else ""),
        hint="only a principal the policy allows may move this environment, signing with `--sign` as "
             "themselves (see .tether/allowed_signers and meta.tether.signing in dvc.yaml); a move the "
             "policy rejects must be undone on the server by an administrator")


def enforce_env(ws: Workspace, reg: Histories, model: str, env: str, signers: Path | None = None,
                what: str = "", head: bool = True) -> list[Verdict]:
    verdicts = env_verdicts(ws, reg, model, env, allowed_signers(ws, signers), head=head)
    if bad := violations(verdicts):
        raise refuse(env, bad, what)
    return verdicts


def enforce_release(ws: Workspace, rel: Release, signers: Path | None = None,
                    pol: sp.Policy | None = None) -> None:
    pol = pol or policy(ws, rel.name.model)
    if not release_rule_active(pol):
        return
    problem = release_problem(ws.git, rel, pol, allowed_signers(ws, signers))
    if problem:
        raise IntegrityError(f"release tag {rel.tag} ({rel.tag_object[:12]}) is {problem}",
                             hint="release it again with `tether release --sign`, signed by a principal "
                                  "meta.tether.signing.releases allows")


def check_new_move(ws: Workspace, commit: str, env: str, approver: str, rule: sp.Rule,
                   signers: Path | None) -> None:
    """The commit a promote/rollback just made, judged before any ref moves."""
    sig = commit_signatures(ws.git, [commit], allowed_signers(ws, signers), max_count=1).get(commit, sp.UNSIGNED)
    if problem := sp.judge(sig, rule, approver if sig.signed else None):
        raise IntegrityError(f"{env}: the new move {commit[:12]} would be {problem}; nothing was moved",
                             hint="sign as the approver (--approver must name your own principal), "
                                  "with a key in .tether/allowed_signers that the policy allows here")


def findings(ws: Workspace, reg: Histories, releases: list[Release]) -> list[tuple[str, str]]:
    """(tag or environment, problem) for `tether check`: release tags and environment moves
    the policy rejects."""
    out = []
    signers = allowed_signers(ws)
    for model in sorted({r.name.model for r in releases}):
        pol = policy(ws, model)
        if release_rule_active(pol):
            for rel in (r for r in releases if r.name.model == model):
                if problem := release_problem(ws.git, rel, pol, signers):
                    out.append((rel.tag, f"tag object {rel.tag_object[:12]} is {problem}"))
        for env in ws.environments(model):
            for v in violations(env_verdicts(ws, reg, model, env, signers, pol)):
                out.append((env, f"move {v.commit[:12]} {v.problem}"))
    return out
