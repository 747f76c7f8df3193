"""The signing policy and its verdicts (pure): table tests."""

from __future__ import annotations

import pytest

from tether.core import signpolicy as sp
from tether.errors import UsageError

LEADS = sp.Rule(True, ("lead@example.com",))
GOOD = sp.Signature("G", "lead@example.com", "SHA256:abc")


@pytest.mark.parametrize("sig, rule, approver, want", [
    (sp.UNSIGNED, sp.Rule(), None, None),
    (sp.UNSIGNED, sp.Rule(True), None, "unsigned, and a signature is required"),
    (GOOD, LEADS, "lead@example.com", None),
    (GOOD, LEADS, "Lee Lead <LEAD@example.com>", None),
    (GOOD, LEADS, "ceo@example.com", "Tether-Approver says 'ceo@example.com'"),
    (GOOD, sp.Rule(), "ceo@example.com", "Tether-Approver says"),  # a signed lie is a lie anywhere
    (sp.Signature("G", "ops@example.com", "SHA256:o"), LEADS, None, "ops@example.com, who is not allowed here"),
    (sp.Signature("G", "ops@example.com", "SHA256:o"), sp.Rule(True, ("SHA256:o",)), None, None),  # by fingerprint
    (sp.Signature("U", "", "SHA256:x"), LEADS, None, "not in the allowed signers file"),
    (sp.Signature("U", "", "SHA256:x"), sp.Rule(), None, None),  # reported, not refused, where no rule asks
    (sp.Signature("B", "", "k"), sp.Rule(True), None, "bad signature"),
    (sp.Signature("R", "", "k"), sp.Rule(True), None, "revoked key"),
])
def test_judge(sig, rule, approver, want):
    got = sp.judge(sig, rule, approver)
    assert (got is None) if want is None else (got is not None and want in got), got


@pytest.mark.parametrize("raw, code, want", [
    ('Good "git" signature for lead@example.com with ED25519 key SHA256:kUq\n', 0,
     sp.Signature("G", "lead@example.com", "SHA256:kUq")),
    ('Good "git" signature with ED25519 key SHA256:Nvj\nNo principal matched.\n', 1, sp.Signature("U", "", "SHA256:Nvj")),
    ("[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG 1234 Lee Lead <lead@example.com>\n[GNUPG:] VALIDSIG ABCDEF0123 2026\n"
     "[GNUPG:] TRUST_ULTIMATE 0 pgp\n", 0, sp.Signature("G", "Lee Lead <lead@example.com>", "ABCDEF0123")),
    ("[GNUPG:] GOODSIG 1234 Lee <l@x>\n[GNUPG:] VALIDSIG ABC 2026\n[GNUPG:] TRUST_UNDEFINED 0\n", 0,
     sp.Signature("U", "Lee <l@x>", "ABC")),
    ("[GNUPG:] ERRSIG 1234 22 10 00 1\n[GNUPG:] NO_PUBKEY 1234\n", 1, sp.Signature("E", detail="ERRSIG")),
    ("[GNUPG:] REVKEYSIG 1234 Lee\n", 1, sp.Signature("R", detail="REVKEYSIG")),
    ("something else entirely\n", 1, sp.Signature("E", detail="something else entirely")),
])
def test_parse_raw_reads_both_formats(raw, code, want):
    assert sp.parse_raw(raw, code) == want


@pytest.mark.parametrize("raw, key", [
    ({"environment": {}}, "signing.environment"),
    ({"environments": []}, "signing.environments"),
    ({"environments": {"production": {"require_signed": "yes"}}}, "signing.environments.production.require_signed"),
    ({"environments": {"production": {"principals": "lead@example.com"}}}, "production.principals"),
    ({"environments": {"production": {"principals": [" lead"]}}}, "production.principals"),
    ({"releases": {"signers": []}}, "signing.releases.signers"),
])
def test_a_malformed_policy_names_its_key(raw, key):
    with pytest.raises(UsageError) as exc:
        sp.parse(raw)
    assert key in exc.value.message


def test_parse_and_merge():
    pol = sp.parse({"releases": {"require_signed": True},
                    "environments": {"production": {"require_signed": True, "principals": ["a", "b"]}}})
    assert pol.releases == sp.Rule(True) and pol.env("production") == sp.Rule(True, ("a", "b"))
    assert pol.env("staging") == sp.Rule() and pol.active and not sp.parse({}).active
    host = sp.Policy(environments={"production": sp.Rule(True, ("b", "c")), "staging": sp.Rule(True)})
    both = sp.merge(pol, host)
    assert both.env("production") == sp.Rule(True, ("b",)) and both.env("staging") == sp.Rule(True)
    assert both.releases == sp.Rule(True)
