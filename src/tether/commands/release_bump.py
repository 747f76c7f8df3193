"""`tether release`'s proposed version: the bump the manifest's changes (and the serving code's)
call for, applied above every version that exists, whoever tagged it."""

from __future__ import annotations

from tether.core import codedeps
from tether.core import manifest as mf
from tether.errors import Conflict, UsageError
from tether.core.semver import Version
from tether.registry.release import Release
from tether.adapters.workspace import Workspace


def next_version(ws: Workspace, model: str, commit: str, manifest: dict, wanted: Version | None, bump: str | None,
                 previous: Release | None, highest: Release | None) -> tuple[str | None, list[str], Version]:
    """(bump kind, reasons, version) of the release of `commit`: `wanted` if given; else the
    first version, or `previous` (the latest complete release) bumped above `highest` (every
    version). Conflict when nothing in the tuple changed since `previous`."""
    kind: str | None
    if wanted is not None:
        return None, ["--version given"], wanted
    if previous is None and highest is None:
        kind, reasons = "initial", ["first release of this model"]
        return kind, reasons, Version(1, 0, 0) if not bump else Version(0, 0, 0).bump(bump)
    if previous is None:
        assert highest is not None  # previous is None but some tag exists
        kind = bump or "minor"
        reasons = [f"first complete release; {highest.tag} exists already"]
        return kind, reasons, _above(highest.version, kind)
    kind, reasons = mf.propose_bump(previous.manifest, {**manifest, "version": "next"})
    served = _serving_code_changed(ws, model, previous.commit, commit)
    if served and kind in (None, "patch"):
        kind, reasons = "patch", [*reasons, served]
    if bump:
        kind, reasons = bump, [f"--bump {bump}", *reasons]
    if kind is None:
        raise Conflict(
            f"nothing in the tuple changed since {previous.tag}: weights, data, code, params "
            "and threshold are identical",
            hint="there is nothing to release; give --version to tag it anyway",
        )
    return kind, reasons, _above(highest.version if highest else previous.version, kind)


def _serving_code_changed(ws: Workspace, model: str, before: str, now: str) -> str | None:
    """Why the serving code differs between two commits (the entrypoint's spec, its file or a
    project module it imports), or None. The serving entrypoint is part of the release."""
    spec = ws.settings(model).serve.get("entrypoint")
    try:
        old_spec = ws.settings_at(before, model).serve.get("entrypoint")
    except UsageError:
        old_spec = None  # settings the previous release's commit cannot parse: compare the files alone
    if spec != old_spec:
        return f"serving entrypoint changed ({old_spec or 'none'} → {spec or 'none'})"
    if not spec:
        return None

    def read(rel_path: str) -> str | None:
        p = ws.root / rel_path
        try:
            return p.read_text() if p.is_file() else None
        except (OSError, UnicodeDecodeError):
            return None

    files = sorted(codedeps.serving_sources(spec, read))
    if not files:
        return None
    a, b = ws.git.ls_tree(before, files), ws.git.ls_tree(now, files)
    changed = [f for f in files if a.get(f) != b.get(f)]
    return f"serving code changed ({', '.join(changed[:4])}{' …' if len(changed) > 4 else ''})" if changed else None


def _above(version: Version, kind: str) -> Version:
    """The bump applied to the highest existing version, so a proposal never collides with a
    version someone made with git tag or gto register."""
    return version.bump(kind)
