"""tether's optional parts, pyproject.toml's extras, and the one check that names the extra a
command needs when it is not installed (a usage error, exit 2, never an ImportError).

The check only looks for the modules (importlib.util.find_spec): it imports nothing, so a
command pays for it a few stat calls, not the library's start-up.
"""

from __future__ import annotations

import importlib.util

from tether.errors import UsageError

# extra -> the top-level modules it installs that tether imports (docs/install.md lists them)
EXTRAS: dict[str, tuple[str, ...]] = {
    "s3": ("dvc_s3",),
    "serve": ("fastapi", "uvicorn"),
    "sklearn": ("sklearn", "skops", "numpy", "pandas", "pyarrow"),
    "onnx": ("onnxruntime", "numpy"),
    "mlflow": ("mlflow", "sqlalchemy", "alembic"),
}


def missing(extra: str) -> list[str]:
    """The modules of `extra` that this Python cannot import."""
    gone = []
    for name in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken install, or a module without a spec
            found = False
        if not found:
            gone.append(name)
    return gone


def install_hint(extra: str) -> str:
    return f"pip install 'tether[{extra}]' (or every runtime extra: 'tether[all]'; docs/install.md)"


def require(extra: str, what: str) -> None:
    """UsageError when `extra` is not installed: `what` (e.g. "tether serve") needs it."""
    gone = missing(extra)
    if gone:
        raise UsageError(f"{what} needs the {extra} extra, and {', '.join(gone)} "
                         f"{'is' if len(gone) == 1 else 'are'} not installed", hint=install_hint(extra))
