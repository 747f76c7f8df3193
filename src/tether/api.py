"""tether as a library: the verified release an environment runs, in a notebook, a pipeline or
a service, and the registry's answers as typed records (docs/python-api.md).

    import tether.api

    with tether.api.load("production") as m:       # or "fraud-detector@v1.2.0", or "latest"
        m.release, m.commit, m.threshold            # what production runs, exactly
        m.predict(records)                          # a list of dicts, or a DataFrame

    tether.api.releases()    tether.api.status()    tether.api.history("production")
    tether.api.show("production")                   tether.api.diff("production", "latest")

This module is the stable surface: its functions, the records they return and the exceptions
they raise. Every refusal is one of tether's own exceptions (`TetherError` and its subclasses,
each with the CLI's exit code in `exit_code`), never a half-loaded model. Importing it loads no
DVC, scikit-learn, pandas, Hydra, FastAPI or typer; a call loads what it needs.

The work is done below it, in tether.library (the records, the reads, the load); the read
records are those the CLI prints with `--json`.
"""

from __future__ import annotations

import os

from tether.errors import (Conflict, GateFailed, IntegrityError, NotFound, StorageError, TetherError,
                           UsageError)
from tether.library.answers import (BranchState, EnvironmentHistory, EnvironmentStatus, FilesChange, History,
                                    LiveAt, ModelStatus, Move, ParamsChange, ReleaseDiff, ReleaseRow,
                                    ShownRelease, Signature, ThresholdChange, ValueChange)
from tether.library.model import LoadedRelease

__all__ = [
    "load", "releases", "status", "history", "show", "diff",
    "LoadedRelease", "ReleaseRow", "ModelStatus", "EnvironmentStatus", "BranchState", "History",
    "EnvironmentHistory", "Move", "Signature", "LiveAt", "ShownRelease", "ReleaseDiff", "FilesChange",
    "ParamsChange", "ThresholdChange", "ValueChange",
    "TetherError", "UsageError", "NotFound", "Conflict", "GateFailed", "IntegrityError", "StorageError",
]

PathLike = str | os.PathLike[str]


def _workspace(repo: PathLike):
    from tether.adapters.workspace import Workspace

    return Workspace.discover(os.fspath(repo))


def load(ref: str, *, model: str | None = None, repo: PathLike = ".", cache: PathLike | None = None,
         in_process: bool = False) -> LoadedRelease:
    """The release `ref` names, materialised with every byte verified, and its model.

    `ref`: an environment (`"production"`: the release its branch names, as `tether show
    production` says), a release (`"fraud-detector@v1.2.0"`), `"latest"`, or a model's name (its
    latest release). `model`: which model, when the repository declares several. `repo`: a path
    in the repository. `cache`: where releases are materialised (default: the repository's
    `.git/tether/loaded/`; never a directory in the work tree). The work tree is never touched;
    objects the local DVC cache lacks come from the DVC remote.

    An already materialised copy is reused only after every file of it verifies again; a copy or
    a cache object that does not is an IntegrityError. The model runs in a worker process, as
    `tether serve` runs it, started at the first `predict`; `in_process=True` loads a built-in
    loader's model (skops, ONNX) into this process instead. Close it (`with`, or `close()`).

    Raises NotFound (no such release or environment), IntegrityError (a release, tag, signature
    or byte that cannot be trusted), StorageError (the DVC remote lacks an object), UsageError."""
    from tether.library.load import stage

    staged = stage(_workspace(repo), ref, model, cache)
    return LoadedRelease(staged, in_process=in_process)


def releases(model: str | None = None, repo: PathLike = ".") -> list[ReleaseRow]:
    """Every release (of `model`, or of every model), newest SemVer first: `tether list --json`."""
    from tether.library import reads

    return reads.releases(_workspace(repo), model)


def status(repo: PathLike = ".", model: str | None = None) -> list[ModelStatus]:
    """Per model: the latest release, what each environment runs, and which releases the work
    tree's HEAD is: `tether status --json`."""
    from tether.library import reads

    return reads.status(_workspace(repo), model)


def history(env: str | None = None, model: str | None = None, repo: PathLike = ".",
            at: str | None = None) -> History:
    """The moves of `env` (or of every environment), newest first, each with its signature
    verdict: `tether history --json`. `at` (ISO-8601): also which release was live then.
    IntegrityError when the repository's signing policy rejects a move (the CLI exits 6)."""
    from tether.library import reads

    found = reads.history(_workspace(repo), model, env, at)
    if found.refused:
        raise IntegrityError(found.refused, hint="see the moves marked REFUSED in `tether history`")
    return found


def show(ref: str, model: str | None = None, repo: PathLike = ".") -> ShownRelease:
    """The release `ref` names and its manifest: `tether show REF --json` (that is `.as_dict()`)."""
    from tether.library import reads

    return reads.show(_workspace(repo), ref, model)


def diff(a: str, b: str, repo: PathLike = ".") -> ReleaseDiff:
    """What changed from the release `a` names to the one `b` names: `tether diff A B --json`."""
    from tether.library import reads

    return reads.diff(_workspace(repo), a, b)
