"""`ReadyQueue`: begun tasks waiting for a handler thread, and how many more to begin now.

The starter records each run's start in Redis before a handler runs it (crash quarantine).
Done by the handler itself, every task waited out a Redis round trip on its thread, which
bounded a worker to its threads' count of begins per round trip. The starter begins tasks
ahead in batches, so a handler that ends a short task finds the next one begun.

Beginning ahead has a cost: a started task that has not run yet dies with its worker like a
running one, and counts the crash. So the queue asks for one task per idle handler, and one
more per busy handler only while runs are short (their average, and the current run, under
`SHORT_RUN`): then a begun task waits a few milliseconds at most. Long tasks are begun only
for idle handlers, as when each handler began its own.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ringleader.worker.book import Fetched
from ringleader.worker.ledger import Begin

__all__ = ["SHORT_RUN", "Ready", "ReadyQueue"]

# A run at most this long (seconds) is short: a task begun behind it waits about this long.
SHORT_RUN = 0.02
# Weight of the newest run in the average run time.
_EWMA_WEIGHT = 0.2


@dataclass(frozen=True, slots=True)
class Ready:
    """A task whose start is recorded (or needs none): a handler runs it."""

    task: Fetched
    begin: Begin
    alone: bool = False  # a suspect's run: no other run shares the process meanwhile


class ReadyQueue:
    """FIFO of `Ready` items between the starter and `concurrency` handler threads."""

    def __init__(self, concurrency: int, clock: Callable[[], float], *, most: int) -> None:
        self._concurrency = concurrency
        self._most = most  # begun and waiting, at most
        self._clock = clock
        self._cond = threading.Condition()
        self._items: deque[Ready] = deque()
        self._busy: dict[int, float] = {}  # handler thread id -> when its run started
        self._average: float | None = None  # seconds per run, once one ended
        self._closed = False

    # ---- the starter ------------------------------------------------------------------

    def wanted(self, timeout: float) -> int:
        """How many tasks to begin now; waits up to `timeout` while that is none."""
        with self._cond:
            n = self._wanted(self._clock())
            if n == 0 and not self._closed:
                self._cond.wait(timeout)
                n = self._wanted(self._clock())
            return 0 if self._closed else n

    def _wanted(self, now: float) -> int:
        idle = self._concurrency - len(self._busy)
        avg = self._average
        if avg is None or avg > SHORT_RUN:
            return max(0, idle - len(self._items))
        # Enough for the handlers that are idle or on a short run so far to keep busy for
        # about SHORT_RUN: a task begun now waits about that long at most.
        young = sum(1 for started in self._busy.values() if now - started < SHORT_RUN)
        per = max(1, int(SHORT_RUN / avg)) if avg > 0 else self._most
        return max(0, min(self._most, (idle + young) * per) - len(self._items))

    def put(self, item: Ready) -> bool:
        """False (not queued) once closed."""
        with self._cond:
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    # ---- handler threads --------------------------------------------------------------

    def pop(self, now: float, timeout: float | None = None) -> Ready | None:
        """The next begun task (the calling thread counts as busy from now), or None after
        at most `timeout` seconds or once closed."""
        with self._cond:
            if not self._items and timeout and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._items:
                return None
            self._busy[threading.get_ident()] = now
            self._cond.notify_all()  # the starter may begin one more
            return self._items.popleft()

    def ended(self, seconds: float | None) -> None:
        """The calling thread is done with the task it popped: it ran for `seconds`, or did
        not run (None: its claim had lapsed)."""
        with self._cond:
            self._busy.pop(threading.get_ident(), None)
            avg = self._average
            if seconds is not None:
                self._average = seconds if avg is None else avg + _EWMA_WEIGHT * (seconds - avg)
            self._cond.notify_all()

    # ---- shutdown ---------------------------------------------------------------------

    def close(self) -> list[Ready]:
        """Wake every waiter; later pops return None. Returns the items no handler took."""
        with self._cond:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return left

    @property
    def closed(self) -> bool:
        return self._closed
