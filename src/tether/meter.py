"""Byte counting for progress bars. The code that moves or hashes bytes (materialise's verified
copy and stream, `digest.sha256_file`) reports each block here, and the code that knows how many
bytes a step will move (a deploy's manifest sizes) says so first; the CLI, and only when stderr is
a terminal, turns the count into a bar with a known end. A context variable, so a count belongs to
one call (and one thread's context), never to the module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class _Count:
    advance: Callable[[int], None]
    expect: Callable[[int], None] | None


_SINK: ContextVar[_Count | None] = ContextVar("tether_bytes", default=None)


def advance(n: int) -> None:
    """`n` more bytes copied or hashed (a no-op unless someone is counting)."""
    count = _SINK.get()
    if count is not None:
        count.advance(n)


def expect(n: int) -> None:
    """`n` more bytes will be counted inside the block (from a manifest's sizes): the bar's
    total grows by that much (a no-op unless someone is counting and wants totals)."""
    count = _SINK.get()
    if count is not None and count.expect is not None and n > 0:
        count.expect(n)


@contextmanager
def counting(sink: Callable[[int], None], expected: Callable[[int], None] | None = None) -> Iterator[None]:
    """Send every byte counted inside the block to `sink`, and every expected total to `expected`."""
    token = _SINK.set(_Count(sink, expected))
    try:
        yield
    finally:
        _SINK.reset(token)
