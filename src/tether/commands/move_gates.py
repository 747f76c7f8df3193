"""The gates of `tether promote` and `tether rollback`: check, regression, staging-first and the
smoke test, in that order; a failed group refuses before the next, slower one runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tether.core import gates
from tether.core import history
from tether.core import moves
from tether.core.moves import Event
from tether.core.settings import Settings, load_yaml
from tether.registry.check import FINDING_ERRORS, INCOMPLETE, MISSING, MOVED, check_releases
from tether.adapters.dvcstore import DvcStore
from tether.errors import GateFailed, IntegrityError, StorageError, UsageError
from tether.registry.registry import Registry
from tether.registry.release import Release
from tether.adapters.workspace import Workspace


def move_gates(ws: Workspace, reg: Registry, rel: Release, store: DvcStore, *, action: str, env: str,
               current: Event | None, notes: dict, allow_incomplete: str | None, allow_regression: str | None,
               skip_staging: str | None, smoke: bool, push: bool,
               override_rollback: str | None = None) -> list[gates.GateResult]:
    """Every gate of the move, raising GateFailed at the first failed group. A gate passed by
    an override records its reason in `notes` (the move's extra trailers)."""
    results = _release_gates(reg, rel, store, allow_incomplete, notes, push=push)
    if (attested := _attestation_gate(ws, rel, env)) is not None:
        results.append(attested)
    gates.raise_failures(results, action)
    settings = ws.settings(rel.name.model)
    if action == "promote":
        results.append(_rollback_gate(reg, rel, env, override_rollback, notes))
        results.append(_regression_gate(ws, reg, rel, store, current, env, settings, allow_regression, notes))
        if (staging := _staging_gate(reg, rel, env, settings, skip_staging, notes)) is not None:
            results.append(staging)
    gates.raise_failures(results, action)
    own = release_settings(ws, rel) if smoke else settings
    if smoke and own.smoke:
        results.append(smoke_gate(ws, rel, store, own))
    elif smoke:
        results.append(gates.passed("smoke", f"disabled for this model in dvc.yaml at {rel.tag}'s commit "
                                             "(meta.tether.smoke: false)"))
    gates.raise_failures(results, action)
    return results


def _attestation_gate(ws: Workspace, rel: Release, env: str) -> gates.GateResult | None:
    """meta.tether.attestation: an environment it names takes only a release attested with the
    committed public key (registry/attested.py); None where the policy does not ask."""
    from tether.registry.attested import policy_problem

    required, problem = policy_problem(ws, rel, env)
    if not required:
        return None
    if problem:
        return gates.GateResult("attestation", False, problem,
                                f"attest it with the team's key (tether attest {rel.tag} --key KEY --push); "
                                f"meta.tether.attestation in dvc.yaml requires it in {env}")
    return gates.passed("attestation", f"{rel.tag} is attested with the committed key")


def _release_gates(reg: Registry, rel: Release, store: DvcStore, allow_incomplete: str | None,
                   notes: dict, push: bool = False) -> list[gates.GateResult]:
    report = check_releases(reg, [rel], store)
    out = []
    for f in report.findings:
        err = FINDING_ERRORS[f.kind]
        if push and f.kind == MISSING and f.tag == rel.tag and (pushable := _pushable(rel, store)):
            out.append(gates.passed("check", f"{pushable} object(s) of {rel.tag} the DVC remote lacks will be "
                                             "pushed from the local cache first"))
            continue
        if f.kind == INCOMPLETE and f.tag == rel.tag and allow_incomplete and rel.manifest is not None:
            notes[moves.ALLOW_INCOMPLETE] = moves.one_line(allow_incomplete, "allow-incomplete reason")
            out.append(gates.passed("complete", f"allowed without {', '.join(rel.missing_parts)}: {allow_incomplete}"))
            continue
        if f.tag == rel.tag or f.kind == MOVED:
            hint = ("declare the missing parts in dvc.yaml and release again, or pass --allow-incomplete REASON"
                    if f.kind == INCOMPLETE else "run `tether check` for details")
            out.append(gates.GateResult("check", False, f"{f.tag}: {f.message}", hint, err))
    return [g for g in out if not g.ok] or out or [
        gates.passed("check", f"{rel.tag} is complete, matches its commit, and is on the remote")]


def _regression_gate(ws: Workspace, reg: Registry, rel: Release, store: DvcStore, current: Event | None, env: str,
                     settings: Settings, allow_regression: str | None, notes: dict) -> gates.GateResult:
    cur = reg.by_tag(current.release) if current is not None and current.release else None
    if cur is not None:
        cur = reg.resolve_objects([cur], store)[0]
    unread = {r.tag: _unread_objects(ws, r) for r in (cur, rel) if r is not None and r.unresolved}
    if cur is not None and cur.manifest and unread:
        # Metrics (or a threshold) live in DVC objects neither this clone's cache nor the DVC
        # remote holds: comparing without them would pass here and refuse in the author's
        # clone. Refuse in every clone alike, naming what is missing.
        return gates.unreadable("regression", unread)
    if cur is not None and cur.manifest:
        reg_gate = gates.regression(cur.manifest.get("metrics") or {}, (rel.manifest or {}).get("metrics") or {},
                                    settings.tolerance, policy=settings.metric_policy)
        if not reg_gate.ok and allow_regression:
            notes[moves.ALLOW_REGRESSION] = moves.one_line(allow_regression, "allow-regression reason")
            reg_gate = gates.passed("regression", f"allowed: {reg_gate.message}")
        return reg_gate
    return gates.passed("regression", f"{env} runs nothing yet")


def _rollback_gate(reg: Registry, rel: Release, env: str, override: str | None, notes: dict) -> gates.GateResult:
    """Refuse a release `env` was rolled back away from, unless overridden (core/history.py:
    derived from the environment's moves, counting only those tether made)."""
    block, ignored = history.rollback_block(reg.history(rel.name.model, env), rel.tag, reg.by_tag)
    gate = gates.rolled_back(env, rel.tag, block, ignored, override)
    if gate.ok and block is not None and block.override is None:  # overridden now: recorded in the move
        notes[moves.OVERRIDE_ROLLBACK] = moves.one_line(override, "override-rollback text")
        notes[moves.OVERRIDE_ROLLBACK_MOVE] = block.rollback.commit
    return gate


def _staging_gate(reg: Registry, rel: Release, env: str, settings: Settings, skip_staging: str | None,
                  notes: dict) -> gates.GateResult | None:
    envs = settings.environments
    idx = envs.index(env) if env in envs else 0  # a GTO stage outside the configured order
    if not (settings.require_staging and idx > 0):
        return None
    before = envs[idx - 1]
    was_there = any(ev.release == rel.tag for ev in reg.history(rel.name.model, before))
    if was_there:
        return gates.passed("staging-first", f"{rel.tag} was in {before}")
    if skip_staging:
        notes[moves.SKIP_STAGING] = moves.one_line(skip_staging, "skip-staging reason")
        return gates.passed("staging-first", f"skipped: {skip_staging}")
    return gates.GateResult("staging-first", False, f"{rel.tag} was never in {before}",
                            f"promote it to {before} first, or pass --skip-staging REASON")


def release_settings(ws: Workspace, rel: Release) -> Settings:
    """The model's settings as the release's own commit declares them. What belongs to a release
    (its eval slice, whether it is smoke-tested, how it is served) is read from there, never from
    HEAD: the same release gets the same verdict whatever is checked out (docs/gates.md)."""
    return ws.settings_at(rel.commit, rel.name.model)


def _pushable(rel: Release, store: DvcStore) -> int:
    """How many objects of `rel` the remote lacks, when the local cache has every one of them
    (0 when it does not: then the check gate fails as before)."""
    from tether.adapters.publish import all_md5s

    missing = store.missing_on_remote(all_md5s(rel.manifest or {}))
    return len(missing) if missing and not store.missing_in_cache(missing) else 0


def smoke_gate(ws: Workspace, rel: Release, store: DvcStore, settings: Settings | None = None) -> gates.GateResult:
    """Load the bundle from an isolated checkout of the release, predict the frozen eval
    slice, and match the recorded predictions digest and metrics."""
    from tether.runtime import smoke_gate

    settings = settings or release_settings(ws, rel)
    with tempfile.TemporaryDirectory(prefix="tether-smoke-") as tmp:
        try:
            msg = smoke_gate.run_smoke(ws.git, store, rel.require_trusted("smoke-tested"), settings, Path(tmp) / "release")
        except (IntegrityError, StorageError, GateFailed, UsageError) as exc:
            hint = exc.hint
            if "serve.entrypoint" in (hint or "") and not settings.serve.get("entrypoint") \
                    and ws.settings(rel.name.model).serve.get("entrypoint"):
                hint = (f"{rel.tag}'s commit {rel.commit[:12]} declares no meta.tether.serve.entrypoint (HEAD does, "
                        "but a release is served as its own commit says): release again from a commit that declares it")
            return gates.GateResult("smoke", False, exc.message, hint, type(exc))
    return gates.passed("smoke", msg)


def _unread_objects(ws: Workspace, rel: Release) -> dict[str, str]:
    """{path at the release's commit: md5} of the DVC objects its derivation could not read
    (after fetching what the remote holds): named from dvc.lock at that commit."""
    from tether.core import dvcgraph

    try:
        lock = load_yaml(ws.git.show_or_none(rel.commit, "dvc.lock") or "") or {}
        outs = {o.md5: o.path for st in dvcgraph.lock_stages(lock).values() for o in st.outs if o.md5}
    except Exception:  # noqa: BLE001 - only the names suffer: the md5s are named instead
        outs = {}
    return {outs.get(m, f"object {m}"): m for m in rel.unresolved}
