"""The cyclic garbage collector paused around bulk work that allocates by the ten thousand.

`submit_many` of 50,000 specs makes that many envelopes, tuples and handles, all alive until
the call returns: each young collection promotes them, and the collector keeps walking the
growing old generation (measured: about half of the call's time). None of them form cycles,
so reference counting frees them all the same. Pauses nest and may overlap across threads:
the collector comes back when the last one ends, and only if it was on before the first.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC off for the block, then back as it was before the outermost pause."""
    global _depth, _was_enabled  # noqa: PLW0603  (one collector per process, so one count)
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
