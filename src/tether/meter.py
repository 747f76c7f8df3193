"""Byte counting for progress bars. The code that moves or hashes bytes (materialise's verified
copy and stream, `digest.sha256_file`) reports each block here; the CLI, and only when stderr is
a terminal, turns the count into a bar. A context variable, so a count belongs to one call (and
one thread's context), never to the module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SINK: ContextVar[Callable[[int], None] | None] = ContextVar("tether_bytes", default=None)


def advance(n: int) -> None:
    """`n` more bytes copied or hashed (a no-op unless someone is counting)."""
    sink = _SINK.get()
    if sink is not None:
        sink(n)


@contextmanager
def counting(sink: Callable[[int], None]) -> Iterator[None]:
    """Send every byte counted inside the block to `sink`."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)
