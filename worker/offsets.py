"""Which offset of a partition may be committed (Kafka semantics: the next offset to read).

Tasks of one partition complete out of order; the commit may only move past offsets whose
tasks are all done. Offsets are started in increasing order (the consumer's fetch order) and
may have gaps (transaction markers, compaction), so "contiguous" means contiguous among the
offsets that were started, not numerically.

Memory is bounded by the window between the committable position and the last started offset:
done offsets behind the oldest unfinished one are forgotten. `outstanding` lets the runtime stop
fetching from a partition whose window grows too large behind one slow task.
"""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    """Completed offsets of one partition. Not thread-safe: the caller's lock guards it."""

    __slots__ = ("_last_started", "_pending", "_position", "_window")

    def __init__(self, position: int | None = None) -> None:
        # Next offset to read as of the last commit (or assignment); None when unknown.
        self._position = position
        self._last_started: int | None = None
        self._pending: set[int] = set()  # started, not done
        self._window: deque[int] = deque()  # started offsets not yet passed by the commit

    def mark_started(self, offset: int) -> None:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        floor = self._last_started
        if floor is not None and offset <= floor:
            raise ValueError(f"offset {offset} started after {floor}; offsets must increase")
        if self._position is not None and offset < self._position:
            raise ValueError(f"offset {offset} is below the committed position {self._position}")
        self._last_started = offset
        self._pending.add(offset)
        self._window.append(offset)

    def mark_done(self, offset: int) -> None:
        try:
            self._pending.remove(offset)
        except KeyError:
            raise ValueError(f"offset {offset} was not started or is already done") from None
        self._advance()

    def _advance(self) -> None:
        window, pending = self._window, self._pending
        while window and window[0] not in pending:
            self._position = window.popleft() + 1

    def committable(self) -> int | None:
        """The offset to commit: one past the highest offset below which every task is done."""
        return self._position

    @property
    def in_flight(self) -> int:
        """Offsets started and not done."""
        return len(self._pending)

    @property
    def outstanding(self) -> int:
        """Offsets held in memory: started but not yet passed by the committable position."""
        return len(self._window)

    def pending(self) -> list[int]:
        """Started-but-not-done offsets, ascending."""
        return sorted(self._pending)
