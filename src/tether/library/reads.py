"""The read commands' answers over an open workspace, as the typed records of
tether.library.answers: what `tether list`, `status`, `history`, `show` and `diff` print (the
typer commands print each record's `as_dict()` with `--json`) and what tether.api returns.

Each is the registry's view (tether.registry.views: computed, or the answer kept for the same
ref state), typed; nothing here computes an answer of its own.
"""

from __future__ import annotations

from tether.adapters.workspace import Workspace
from tether.library.answers import History, ModelStatus, ReleaseDiff, ReleaseRow, ShownRelease


def releases(ws: Workspace, model: str | None = None) -> list[ReleaseRow]:
    """Every release of `model` (or of every model), newest SemVer first."""
    from tether.registry.views import release_rows

    return [ReleaseRow.from_view(r) for r in release_rows(ws, model)]


def status(ws: Workspace, model: str | None = None) -> list[ModelStatus]:
    """Per model: the latest release, what each environment runs, what the work tree matches."""
    from tether.registry.views import model_status

    return [ModelStatus.from_view(st) for st in model_status(ws, model)]


def history(ws: Workspace, model: str | None = None, env: str | None = None, at: str | None = None) -> History:
    """Each environment's moves (or `env`'s), newest first, with each move's signature verdict.
    A move the signing policy rejects is named in `refused`, not raised: the CLI shows the
    history first."""
    from tether.registry.views import env_history

    return History.from_view(env_history(ws, model, env, at))


def show(ws: Workspace, ref: str, model: str | None = None) -> ShownRelease:
    """The release REF names (a release, `latest`, a model's name, or an environment) with its
    manifest; IntegrityError (exit 6) when it cannot be trusted."""
    from tether.registry.views import shown_release

    return ShownRelease.from_view(shown_release(ws, ref, model))


def diff(ws: Workspace, a: str, b: str) -> ReleaseDiff:
    """What changed from the release `a` names to the one `b` names, component by component."""
    from tether.registry.views import release_diff

    return ReleaseDiff.from_view(release_diff(ws, a, b))
