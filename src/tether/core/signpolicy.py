"""Who may release and who may move an environment: the signing policy and its verdicts (pure).

The policy is committed with the model: `meta.tether.signing` in dvc.yaml names, for release
tags and per environment, whether a signature is required and which principals may sign; the
keys behind the principals are in `.tether/allowed_signers` (git's SSH allowed-signers format).
git verifies every signature (`%G?`, `verify-tag --raw`); this module only judges what git said.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tether.core.moves import APPROVER
from tether.errors import UsageError

ALLOWED_SIGNERS = ".tether/allowed_signers"
# What `%G?` means (git-log(1)): G good; U good, unknown validity (an SSH key with no principal
# in the allowed signers file); X/Y expired signature/key; R revoked; B bad; E cannot check; N none.
VALID = ("G",)


@dataclass(frozen=True)
class Rule:
    require_signed: bool = False
    principals: tuple[str, ...] = ()  # empty: any principal of the allowed signers file


@dataclass(frozen=True)
class Policy:
    releases: Rule = field(default_factory=Rule)
    environments: dict[str, Rule] = field(default_factory=dict)

    def env(self, env: str) -> Rule:
        return self.environments.get(env, Rule())

    @property
    def active(self) -> bool:
        rules = [self.releases, *self.environments.values()]
        return any(r.require_signed or r.principals for r in rules)


@dataclass(frozen=True)
class Signature:
    """What git said about one signed object."""

    status: str  # a `%G?` letter ("N": no signature)
    principal: str = ""  # the allowed-signers principal (SSH) or the key's user id (OpenPGP)
    key: str = ""  # fingerprint
    detail: str = ""

    @property
    def signed(self) -> bool:
        return self.status != "N"

    def as_dict(self) -> dict:
        return {"status": self.status, "principal": self.principal, "key": self.key,
                "verified": self.status in VALID}


UNSIGNED = Signature("N")


def _bad(key: str, want: str, value) -> UsageError:
    return UsageError(f"meta.tether.signing{key} in dvc.yaml must be {want}, not {repr(value)[:60]}",
                      hint="see docs/security.md: signing: {releases: {...}, environments: {ENV: "
                           "{require_signed: true, principals: [...]}}}")


def _rule(key: str, raw) -> Rule:
    if not isinstance(raw, dict):
        raise _bad(key, "a mapping with require_signed and principals", raw)
    unknown = set(raw) - {"require_signed", "principals"}
    if unknown:
        raise _bad(f"{key}.{sorted(unknown)[0]}", "one of require_signed, principals (an unknown key)", raw)
    req = raw.get("require_signed", False)
    if not isinstance(req, bool):
        raise _bad(f"{key}.require_signed", "true or false", req)
    principals = raw.get("principals", [])
    if not isinstance(principals, list) or not all(isinstance(p, str) and p.strip() and p == p.strip()
                                                   for p in principals):
        raise _bad(f"{key}.principals", "a list of principals, e.g. [lead@example.com]", principals)
    return Rule(req, tuple(principals))


def parse(raw: dict) -> Policy:
    """`meta.tether.signing` as typed rules; anything else is a usage error naming the key."""
    if not raw:
        return Policy()
    unknown = set(raw) - {"releases", "environments"}
    if unknown:
        raise _bad(f".{sorted(unknown)[0]}", "releases or environments (an unknown key)", raw)
    envs = raw.get("environments", {})
    if not isinstance(envs, dict):
        raise _bad(".environments", "a mapping of environment names to rules", envs)
    return Policy(releases=_rule(".releases", raw.get("releases", {})),
                  environments={str(k): _rule(f".environments.{k}", v) for k, v in envs.items()})


def merge(a: Policy, b: Policy) -> Policy:
    """The stricter of two policies (a host's own rules on top of the repository's)."""
    def both(x: Rule, y: Rule) -> Rule:
        principals = tuple(p for p in x.principals if p in y.principals) if x.principals and y.principals \
            else (x.principals or y.principals)
        return Rule(x.require_signed or y.require_signed, principals)

    envs = {e: both(a.env(e), b.env(e)) for e in {*a.environments, *b.environments}}
    return Policy(both(a.releases, b.releases), envs)


def email_of(ident: str) -> str:
    m = re.search(r"<([^<>]+)>\s*$", ident)
    return m.group(1) if m else ident.strip()


def same_person(approver: str, principal: str) -> bool:
    """`--approver lead@example.com` or `--approver "Lee Lead <lead@example.com>"` both name the
    principal `lead@example.com`; an OpenPGP user id is compared by its email."""
    a, p = email_of(approver), email_of(principal)
    return bool(a) and a.lower() == p.lower()


def judge(sig: Signature, rule: Rule, approver: str | None = None) -> str | None:
    """Why this signature does not satisfy the rule (None: it does). `approver` is the
    `Tether-Approver` trailer of an environment move: when the move is signed, it must name the
    signer, so no one records an approval in someone else's name."""
    if not sig.signed:
        return "unsigned, and a signature is required" if rule.require_signed else None
    enforced = rule.require_signed or bool(rule.principals)
    if sig.status not in VALID and not enforced:
        return None  # reported beside the event, not an error where no rule asks for it
    if sig.status not in VALID:
        what = {"U": "by a key that is not in the allowed signers file", "B": "with a bad signature",
                "X": "with an expired signature", "Y": "by an expired key", "R": "by a revoked key",
                "E": "with a signature git cannot check"}.get(sig.status, f"with signature status {sig.status}")
        return f"signed {what} (key {sig.key or '?'})"
    if rule.principals and not any(same_person(p, sig.principal) or p == sig.key for p in rule.principals):
        return f"signed by {sig.principal}, who is not allowed here (allowed: {', '.join(rule.principals)})"
    if approver is not None and not same_person(approver, sig.principal):
        return f"{APPROVER} says {approver!r} but the move is signed by {sig.principal}"
    return None


# `verify-tag --raw` output. SSH: ssh-keygen's own line; OpenPGP: gpg's status lines.
_SSH_GOOD = re.compile(r'^Good "git" signature for (?P<who>\S+) with \S+ key (?P<key>\S+)', re.M)
_SSH_KEYONLY = re.compile(r'^Good "git" signature with \S+ key (?P<key>\S+)', re.M)
_GPG_GOOD = re.compile(r"^\[GNUPG:\] GOODSIG (?P<id>\S+) (?P<who>.*)$", re.M)
_GPG_VALID = re.compile(r"^\[GNUPG:\] VALIDSIG (?P<fpr>[0-9A-F]+)", re.M)
_GPG_STATES = {"EXPSIG": "X", "EXPKEYSIG": "Y", "REVKEYSIG": "R", "BADSIG": "B", "ERRSIG": "E", "NO_PUBKEY": "E"}


def parse_raw(raw: str, returncode: int) -> Signature:
    """The verdict of one `git verify-tag --raw` run on a tag that carries a signature."""
    if m := _SSH_GOOD.search(raw):
        return Signature("G" if returncode == 0 else "B", m.group("who"), m.group("key"))
    if m := _SSH_KEYONLY.search(raw):
        return Signature("U", "", m.group("key"))
    if "[GNUPG:]" in raw:
        for word, status in _GPG_STATES.items():
            if f"[GNUPG:] {word}" in raw:
                return Signature(status, detail=word)
        good, valid = _GPG_GOOD.search(raw), _GPG_VALID.search(raw)
        if good and valid:
            trusted = re.search(r"^\[GNUPG:\] TRUST_(FULLY|ULTIMATE)", raw, re.M)
            return Signature("G" if trusted and returncode == 0 else "U", good.group("who"), valid.group("fpr"))
    return Signature("E", detail=raw.strip().splitlines()[-1][:200] if raw.strip() else "no output")
