"""`Isolation`: a suspect task runs alone in its worker process.

A task whose runs crashed a worker before (the ledger's SUSPECT verdict) runs only once every
other run in the process has ended and been recorded, and no new run starts meanwhile: if it
kills this worker too, no innocent task's run dies with it and counts against that task.
"""

from __future__ import annotations

import threading

__all__ = ["Isolation", "OwnRuns"]


class Isolation:
    """Runs share the process, except a suspect's: a task whose runs crashed a worker before
    runs alone, once every other run has ended and been recorded, so that if it kills this
    worker too, no innocent task's run dies with it and counts against that task."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._alone = False
        self._waiting = 0  # suspects waiting: no new shared run starts meanwhile

    def enter(self) -> None:
        with self._cond:
            while self._alone or self._waiting:
                self._cond.wait()
            self._running += 1

    def leave(self) -> None:
        with self._cond:
            self._running -= 1
            if self._waiting and not self._running:  # only a suspect waits for this
                self._cond.notify_all()

    def enter_alone(self) -> None:
        with self._cond:
            self._waiting += 1
            while self._alone or self._running:
                self._cond.wait()
            self._waiting -= 1
            self._alone = True

    def leave_alone(self) -> None:
        with self._cond:
            self._alone = False
            self._cond.notify_all()


class OwnRuns:
    """The task ids with a run in this process, from before its begin until its outcome is
    recorded: a second copy of a task (put on a topic twice) waits for the first instead of
    running beside it. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()

    def reserve(self, task_id: str) -> bool:
        """False when a run of `task_id` is already in progress here."""
        with self._lock:
            if task_id in self._ids:
                return False
            self._ids.add(task_id)
            return True

    def drop(self, task_id: str) -> None:
        with self._lock:
            self._ids.discard(task_id)

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            return task_id in self._ids
