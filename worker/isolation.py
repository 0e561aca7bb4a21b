"""`Isolation`: a suspect task runs alone in its worker process.

A task whose runs crashed a worker before (the ledger's SUSPECT verdict) runs only once every
other run in the process has ended and been recorded, and no new run starts meanwhile: if it
kills this worker too, no innocent task's run dies with it and counts against that task.
"""

from __future__ import annotations

import threading

__all__ = ["Isolation"]


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
