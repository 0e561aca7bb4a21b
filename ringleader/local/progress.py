"""Saying what a long start-up is doing, as it happens, without tying library code to a stream.

A `Say` is any callable taking one message. Library functions take one as an argument and
default to `silent`, so tests and other library callers hear nothing; a command passes
`to_stream(...)`, which writes one flushed line per message (live in a pipe too).
`Ticker` keeps a wait's "still waiting" lines to one every few seconds, however often the
condition is polled; time is passed in, so it is tested without sleeping.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["EVERY", "Say", "Ticker", "silent", "to_stream"]

Say = Callable[[str], None]
# Seconds between "still waiting" lines: often enough to show life, rare enough to read.
EVERY = 3.0


def silent(message: str) -> None:
    """The default for library callers: say nothing."""


def to_stream(prefix: str | Callable[[], str], stream: TextIO | None = None) -> Say:
    """A `Say` writing `prefix + message` as one flushed line to `stream` (default stderr,
    looked up per line so a redirected `sys.stderr` is honoured). `prefix` may be a callable
    evaluated per line (a running clock)."""

    def say(message: str) -> None:
        head = prefix() if callable(prefix) else prefix
        print(f"{head}{message}", file=stream or sys.stderr, flush=True)

    return say


class Ticker:
    """One wait's progress lines: "waiting for WHAT" (or `first`) when it starts, then
    "waiting for WHAT ... (N.Ns)" at most once every `every` seconds while `tick()` is
    called (each poll may call it)."""

    def __init__(
        self,
        say: Say,
        what: str,
        *,
        first: str | None = None,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say = say
        self._what = what
        self._every = every
        self._clock = clock
        self._start = clock()
        self._next = self._start + every
        say(first or f"waiting for {what}")

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def tick(self) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._say(f"waiting for {self._what} ... ({now - self._start:.1f}s)")
        # From now, not from the missed mark: a slow poll (a 2 s metadata call) must not
        # be followed by a burst of catch-up lines.
        self._next = now + self._every
