"""One exception tree; each class carries its exit code (docs/design.md, "Command line", exit codes).

Commands raise; only the CLI turns an exception into a message and an exit status.
"""

from __future__ import annotations


class TetherError(Exception):
    """Base class. `hint` says what to do next; the CLI prints it under the message."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(TetherError):
    exit_code = 2


class NotFound(TetherError):
    exit_code = 3


class Conflict(TetherError):
    """Dirty tree, existing tag, lost compare-and-swap, nothing to roll back to."""

    exit_code = 4


class GateFailed(TetherError):
    exit_code = 5

    def __init__(self, message: str, hint: str | None = None, failures: list | None = None) -> None:
        super().__init__(message, hint)
        self.failures = failures or []


class IntegrityError(TetherError):
    """A digest mismatch, a moved tag, a tampered file."""

    exit_code = 6


class StorageError(TetherError):
    """DVC remote unreachable or objects missing on it."""

    exit_code = 7


def by_exit_code(code: int | None) -> type[TetherError]:
    """The class whose exit code is `code` (a worker's `failed` line carries only the code);
    TetherError for any other value, which a hostile or broken worker may send."""
    for cls in (UsageError, NotFound, Conflict, GateFailed, IntegrityError, StorageError):
        if cls.exit_code == code:
            return cls
    return TetherError
