"""The starter: one thread that takes tasks off the scheduling queue, records their starts
in Redis in batches, and hands them to the handler threads (`ReadyQueue`).

A task starts only with a slot of the record window and a claim in the partition book (its
partition still held in the epoch it was fetched under, and the member's session lease still
valid). With crash quarantine on, its start is recorded (`TaskLedger.begin_many`) before any
handler runs it; the ledger's verdict decides the rest: RUN goes to a handler, SUSPECT runs
alone (no other run in the process meanwhile), the others end here (`TaskRunner.not_run`).
How many tasks are begun ahead of the handlers is the ready queue's call (`ReadyQueue.wanted`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import redis

from ringleader.worker.book import Claim, Fetched, PartitionBook
from ringleader.worker.lanes import partition_of
from ringleader.worker.ledger import Begin, BeginRequest, TaskLedger, Verdict, describe_crashes
from ringleader.worker.pool import POP_WAIT, Flusher, RecordWindow
from ringleader.worker.queues import SchedulingQueue
from ringleader.worker.ready import Ready, ReadyQueue
from ringleader.worker.runner import LEASE_RECHECK, TaskRunner

log = logging.getLogger("ringleader.worker")

__all__ = ["Starter"]

# How soon a task whose run is in progress in this process already asks again (seconds).
RUNNING_HERE_RECHECK = 1.0
# How long a suspect waits for the other runs' records before it runs alone (seconds).
ISOLATION_FLUSH_TIMEOUT = 10.0


class Lease(Protocol):
    def owns(self, partition: int) -> bool:
        """Whether a task of `partition` may start now (assigned, session lease valid)."""
        ...


class Starter:
    def __init__(
        self,
        runner: TaskRunner,
        flusher: Flusher,
        *,
        book: PartitionBook,
        lock: threading.Condition,
        lease: Lease,
        ledger: TaskLedger,
        queue: SchedulingQueue,
        ready: ReadyQueue,
        window: RecordWindow,
        clock: Callable[[], float],
    ) -> None:
        self._runner = runner
        self._flusher = flusher
        self._book = book
        self._lock = lock
        self._lease = lease
        self._ledger = ledger
        self._record_starts = ledger.crash_limit > 0
        self._queue = queue
        self._ready = ready
        self._window = window
        self._clock = clock
        self._thread = threading.Thread(target=self._loop, name="ringleader-starter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Once the scheduling queue is closed: wait for the thread, then close the ready
        queue (the handlers stop); begun tasks no handler took are given back."""
        self._thread.join(timeout)
        for item in self._ready.close():
            self._runner.discard(item)

    def _hand_on(self, item: Ready) -> None:
        if not self._ready.put(item):
            self._runner.discard(item)  # stopped meanwhile

    def _loop(self) -> None:
        while not self._queue.closed and not self._ready.closed:
            try:
                n = self._ready.wanted(POP_WAIT)
                if n:
                    self.start_tasks(self._queue.pop_many(self._clock(), n, POP_WAIT))
            except Exception:
                # Task failures are handled where they happen; this is a bug in the runtime.
                # Keep starting: a task lost here stays pending and is redelivered later.
                log.exception("the starter failed")

    def start_tasks(self, tasks: Sequence[object]) -> None:
        """Claim, begin and hand on `tasks` (popped from the scheduling queue)."""
        claimed: list[Fetched] = []
        for task in tasks:
            assert isinstance(task, Fetched)
            if not self._window.acquire():
                break  # stopping: the rest stay pending and are read again by their owner
            if self._admit(task):
                claimed.append(task)
            else:
                self._window.release()
        if not claimed:
            return
        suspects: list[tuple[Fetched, Begin]] = []
        for task, begin in zip(claimed, self._begin(claimed, alone=False), strict=True):
            if begin is not None and begin.verdict is Verdict.RUN:
                self._hand_on(Ready(_with_attempt(task, begin), begin))
                continue
            self._runner.isolation.leave()
            if begin is not None and begin.verdict is Verdict.SUSPECT:
                suspects.append((task, begin))
            else:
                self._end_unrun(task, begin)
        for task, begin in suspects:
            self._start_alone(task, begin)

    def _admit(self, task: Fetched) -> bool:
        """Claim `task` for a run in this process; False (nothing held) when it may not."""
        with self._lock:
            # The lease is read under the book's lock, so a revoke cannot slip between the
            # check and the in-flight count that the revoke waits for.
            owned = self._lease.owns(partition_of(task.partition))
            claim = self._book.claim(task, owned, self._clock())
        if claim is Claim.WAIT:
            log.debug("lease lapsed; %s/%d waits", task.partition, task.offset)
            self._queue.push_backoff(task, self._clock() + LEASE_RECHECK)
            return False
        if claim is Claim.STALE:
            log.debug("dropping %s/%d: partition not held", task.partition, task.offset)
            return False
        if not self._runner.runs.reserve(task.envelope.id):
            # Another copy of it (put on a topic twice) runs in this very process: its start
            # field is this process's own, which the begin script cannot tell from a retry
            # of a begin whose reply was lost. Ask again once that run is recorded.
            log.info("task %s runs in this process already; this copy waits", task.envelope.id)
            self._runner.release(task)
            self._queue.push_backoff(task, self._clock() + RUNNING_HERE_RECHECK)
            return False
        # A start is recorded only inside the isolation, so that no run's start is open
        # while a suspect runs alone (this waits while one does).
        self._runner.isolation.enter()
        return True

    def _start_alone(self, task: Fetched, suspect: Begin) -> None:
        log.warning(
            "task %s (%s) crashed its worker before (%s); running it again, alone",
            task.envelope.id,
            task.envelope.name,
            describe_crashes(suspect.crashes),
        )
        isolation = self._runner.isolation
        isolation.enter_alone()  # every run begun before it has ended
        try:
            # Every earlier run's outcome recorded first: none of their starts stays open.
            self._flusher.wait_idle(ISOLATION_FLUSH_TIMEOUT)
            begin = self._begin([task], alone=True)[0]
        except BaseException:
            isolation.leave_alone()
            raise
        if begin is not None and begin.verdict is Verdict.RUN:
            self._hand_on(Ready(_with_attempt(task, begin), begin, alone=True))
            return  # its handler leaves the isolation once it ran
        isolation.leave_alone()
        self._end_unrun(task, begin)

    def _end_unrun(self, task: Fetched, begin: Begin | None) -> None:
        """A claimed task that does not run (its isolation already left)."""
        handed = False
        try:
            if begin is None:
                self._runner.release(task)
            else:
                handed = self._runner.not_run(task, begin)
        finally:
            if not handed:
                self._runner.runs.drop(task.envelope.id)
                self._window.release()

    def _begin(self, tasks: Sequence[Fetched], *, alone: bool) -> list[Begin | None]:
        """Record the runs' starts (durably, before they run), in one round trip; None for a
        task when the worker stops or its partition is lost while Redis does not answer."""
        if not self._record_starts:
            # Quarantine off: the attempt travels in the envelope (a parked retry carries it).
            return [Begin(Verdict.RUN, attempt=t.envelope.attempt) for t in tasks]
        out: list[Begin | None] = [None] * len(tasks)
        waiting = list(range(len(tasks)))
        backoff = 0.05
        while waiting:
            requests = [
                BeginRequest(e.id, e.name, e.attempt, alone)
                for e in (tasks[i].envelope for i in waiting)
            ]
            try:
                answers = self._ledger.begin_many(requests, self._clock())
                for i, answer in zip(waiting, answers, strict=True):
                    out[i] = answer
                return out
            except redis.RedisError as e:
                log.warning(
                    "recording the start of %d task(s) failed (%s); retrying", len(waiting), e
                )
            if self._queue.closed:
                return out
            waiting = [i for i in waiting if self._lease.owns(partition_of(tasks[i].partition))]
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        return out


def _with_attempt(task: Fetched, begin: Begin) -> Fetched:
    if begin.attempt == task.envelope.attempt:
        return task
    env = dataclasses.replace(task.envelope, attempt=begin.attempt)
    return dataclasses.replace(task, envelope=env)
