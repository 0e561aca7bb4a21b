"""The task runner: what a handler thread does with a task, and what follows its record.

A task starts only with a slot of the record window and a claim in the partition book (its
partition still held in the epoch it was fetched under, and the member's session lease still
valid). Its outcome decides the rest: a success, retry or dead letter goes to the flusher,
whose record marks the offset done; a task whose downstream is unavailable is parked.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import redis

from ringleader.worker import envelope as envelope_mod
from ringleader.worker.app import App
from ringleader.worker.begin_batcher import BeginBatcher
from ringleader.worker.book import Claim, Fetched, PartitionBook, Undecodable
from ringleader.worker.envelope import DeadLetterRecord, EventKind
from ringleader.worker.errors import CANCELLED_TYPE
from ringleader.worker.execute import (
    Cancelled,
    ClaimLost,
    DeadLetter,
    Retry,
    Succeeded,
    Unschedulable,
    execute,
)
from ringleader.worker.isolation import Isolation, OwnRuns
from ringleader.worker.lanes import LaneTopics, level_of, partition_of
from ringleader.worker.ledger import (
    Begin,
    BeginRequest,
    TaskLedger,
    Verdict,
    describe_crashes,
)
from ringleader.worker.pool import Finished, Flusher, RecordWindow
from ringleader.worker.producers import TaskEvents, WorkerProducers
from ringleader.worker.queues import QueuedTask, SchedulingQueue
from ringleader.worker.results import CompletionWrite, RetryWrite, Status

log = logging.getLogger("ringleader.worker")

# How soon a task that found the member's session lease lapsed asks again (seconds).
LEASE_RECHECK = 0.1
# How soon a task whose run is in progress on another live worker asks again (seconds).
RUNNING_ELSEWHERE_RECHECK = 1.0
# How long a suspect waits for the other runs' records before it runs alone (seconds).
ISOLATION_FLUSH_TIMEOUT = 10.0
_SKIPPED = {Verdict.DONE: "already completed", Verdict.STALE: "was a copy of an attempt that ran"}


class Lease(Protocol):
    def owns(self, partition: int) -> bool:
        """Whether a task of `partition` may start now (assigned, session lease valid)."""
        ...


class TaskRunner:
    def __init__(
        self,
        app: App,
        worker_id: str,
        *,
        book: PartitionBook,
        lock: threading.Condition,
        lease: Lease,
        ledger: TaskLedger,
        queue: SchedulingQueue,
        window: RecordWindow,
        producers: WorkerProducers,
        events: TaskEvents,
        tasks_topic: str,
        clock: Callable[[], float],
    ) -> None:
        self._app = app
        self._worker_id = worker_id
        self._book = book
        self._lock = lock
        self._lease = lease
        self._begins = BeginBatcher(ledger, clock)
        self._ledger = ledger
        self._record_starts = ledger.crash_limit > 0
        self._queue = queue
        self._window = window
        self._producers = producers
        self._events = events
        self._lanes = LaneTopics(tasks_topic)
        self._clock = clock
        self._rngs = threading.local()
        self._isolation = Isolation()
        self._runs = OwnRuns()
        self.flusher: Flusher | None = None  # set once built (it calls back `after_record`)
        self.executed = 0

    # ---- handler threads --------------------------------------------------------------

    def run(self, qt: QueuedTask) -> None:
        """Run one task popped from the queue (a handler thread)."""
        assert isinstance(qt, Fetched)
        if not self._window.acquire():
            return  # stopping
        handed = False
        try:
            handed = self._run_claimed(qt)
        finally:
            if not handed:
                self._window.release()

    def _claim(self, task: Fetched) -> bool:
        with self._lock:
            # The lease is read under the book's lock, so a revoke cannot slip between the
            # check and the in-flight count that the revoke waits for.
            owned = self._lease.owns(partition_of(task.partition))
            claim = self._book.claim(task, owned, self._clock())
        if claim is Claim.WAIT:
            log.debug("lease lapsed; %s/%d waits", task.partition, task.offset)
            self._queue.push_backoff(task, self._clock() + LEASE_RECHECK)
        elif claim is Claim.STALE:
            log.debug("dropping %s/%d: partition not held", task.partition, task.offset)
        return claim is Claim.CLAIMED

    def _release(self, task: Fetched) -> None:
        with self._lock:
            self._book.release(task)
            self._lock.notify_all()

    def _run_claimed(self, task: Fetched) -> bool:
        """Run a task holding a window slot; True when the slot went to the flusher with the
        task's outcome (else the caller gives it back)."""
        if not self._claim(task):
            return False
        if not self._runs.reserve(task.envelope.id):
            # Another copy of it (put on a topic twice) runs in this very process: its start
            # field is this process's own, which the begin script cannot tell from a retry
            # of a begin whose reply was lost. Ask again once that run is recorded.
            log.info("task %s runs in this process already; this copy waits", task.envelope.id)
            self._release(task)
            self._queue.push_backoff(task, self._clock() + RUNNING_ELSEWHERE_RECHECK)
            return False
        handed = False
        try:
            handed = self._begin_and_run(task)
        finally:
            if not handed:
                self._runs.drop(task.envelope.id)
        return handed

    def _begin_and_run(self, task: Fetched) -> bool:
        # A start is recorded only inside the isolation, so that no run's start is open
        # while a suspect runs alone.
        self._isolation.enter()
        try:
            begin = self._begin(task, alone=False)
            if begin is not None and begin.verdict is Verdict.RUN:
                return self._execute(self._with_attempt(task, begin), begin.epoch)
        finally:
            self._isolation.leave()
        if begin is not None and begin.verdict is Verdict.SUSPECT:
            return self._run_alone(task, begin)
        if begin is None:
            self._release(task)
            return False
        return self._not_run(task, begin)

    def _run_alone(self, task: Fetched, suspect: Begin) -> bool:
        log.warning(
            "task %s (%s) crashed its worker before (%s); running it again, alone",
            task.envelope.id,
            task.envelope.name,
            describe_crashes(suspect.crashes),
        )
        self._isolation.enter_alone()
        try:
            # Every earlier run's outcome recorded first: none of their starts stays open.
            self._flusher().wait_idle(ISOLATION_FLUSH_TIMEOUT)
            begin = self._begin(task, alone=True)
            if begin is not None and begin.verdict is Verdict.RUN:
                return self._execute(self._with_attempt(task, begin), begin.epoch)
        finally:
            self._isolation.leave_alone()
        if begin is None:
            self._release(task)
            return False
        return self._not_run(task, begin)

    @staticmethod
    def _with_attempt(task: Fetched, begin: Begin) -> Fetched:
        if begin.attempt == task.envelope.attempt:
            return task
        env = dataclasses.replace(task.envelope, attempt=begin.attempt)
        return dataclasses.replace(task, envelope=env)

    def _execute(self, task: Fetched, epoch: int) -> bool:
        flusher = self._flusher()
        env = task.envelope
        flusher.started(env.id)
        self._events.emit(env, EventKind.STARTED, self._clock())
        outcome = execute(
            env, self._app.registry, self._rng(), worker_id=self._worker_id,
            cancel_check=functools.partial(self._ledger.cancel_requested, env.id),
            claim_check=functools.partial(self._ledger.claim_held, epoch),
            where=(partition_of(task.partition), self._book.generation),
        )  # fmt: skip
        self.executed += 1
        now = self._clock()
        if isinstance(outcome, ClaimLost):
            # Paused or cut off past the alive TTL: another worker runs it; record nothing here.
            log.warning("task %s stopped at a checkpoint: %s", env.id, outcome.reason)
            self._ledger.abandon(env.id)  # its new owner must not wait on this stopped run
            flusher.abandoned(env.id)
            self._release(task)
            self._queue.push_backoff(task, now + LEASE_RECHECK)
            return False
        if isinstance(outcome, Cancelled):
            self._events.emit(env, EventKind.CANCELLED, now, error=outcome.reason)
            cancelled = CompletionWrite(
                env.id, error_type=CANCELLED_TYPE, error=outcome.reason, at=now,
                worker_id=self._worker_id,
            )  # fmt: skip
            flusher.submit(Finished(task, cancelled, holds_slot=True))
            return True
        if isinstance(outcome, Succeeded):
            write = CompletionWrite(
                env.id, packed=outcome.packed, at=now, worker_id=self._worker_id
            )
            flusher.submit(Finished(task, write, holds_slot=True))
            return True
        if isinstance(outcome, Retry):
            self._events.emit(
                env, EventKind.FAILED, now, error=f"{outcome.error_type}: {outcome.error}"
            )
            self._events.emit(env, EventKind.RETRYING, now, delay=outcome.delay)
            # The next attempt waits in Redis (the leader puts it back when due), so this
            # offset completes now and holds back no commit.
            due = now + outcome.delay
            nxt = dataclasses.replace(env, attempt=env.attempt + 1, not_before=due)
            retry = RetryWrite(env.id, due, envelope_mod.encode(nxt), task.partition)
            flusher.submit(Finished(task, retry, holds_slot=True))
            return True
        if isinstance(outcome, Unschedulable):
            flusher.status(env.id, Status.UNSCHEDULABLE)
            self._queue.push_unschedulable(task, outcome.service, outcome.retry_at, now)
            self._release(task)
            return False
        assert isinstance(outcome, DeadLetter)
        if outcome.error_type is not None:
            error = f"{outcome.error_type}: {outcome.error}"
            self._events.emit(env, EventKind.FAILED, now, error=error)
        return self.dead_letter(
            task, outcome.reason, outcome.error_type, outcome.error, claimed=True
        )

    def _begin(self, task: Fetched, *, alone: bool) -> Begin | None:
        """Record the run's start (durably, before it runs); None when the worker stops or
        the partition is lost while Redis does not answer."""
        env = task.envelope
        if not self._record_starts:
            # Quarantine off: the attempt travels in the envelope (a parked retry carries it).
            return Begin(Verdict.RUN, attempt=env.attempt)
        backoff = 0.05
        while True:
            try:
                return self._begins.begin(BeginRequest(env.id, env.name, env.attempt, alone))
            except redis.RedisError as e:
                log.warning("recording the start of %s failed (%s); retrying", env.id, e)
            if self._queue.closed or not self._lease.owns(partition_of(task.partition)):
                return None
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _not_run(self, task: Fetched, begin: Begin) -> bool:
        env = task.envelope
        if begin.verdict is Verdict.QUARANTINE:
            n = len(begin.crashes)
            details = describe_crashes(begin.crashes)
            reason = f"crashed its worker {n} times ({details})"
            return self.dead_letter(task, reason, "WorkerCrashed", reason, claimed=True)
        if begin.verdict is Verdict.CANCELLED:
            reason = "cancelled: requested while an earlier run of it ran"
            log.info("task %s %s; not run again", env.id, reason)
            now = self._clock()
            self._events.emit(env, EventKind.CANCELLED, now, error=reason)
            write = CompletionWrite(
                env.id, error_type=CANCELLED_TYPE, error=reason, at=now, worker_id=self._worker_id
            )
            self._flusher().submit(Finished(task, write, holds_slot=True))
            return True
        if begin.verdict is Verdict.WAIT:
            log.info("task %s is running on another live worker; waiting for it", env.id)
            self._release(task)
            self._queue.push_backoff(task, self._clock() + RUNNING_ELSEWHERE_RECHECK)
            return False
        # DONE or STALE: its outcome (or its next attempt) is recorded; nothing to run.
        log.info("task %s %s; skipped", env.id, _SKIPPED[begin.verdict])
        self._events.skipped(env, begin.verdict.value)
        with self._lock:
            self._book.recorded(task)
            self._lock.notify_all()
        return False

    # ---- dead letters -----------------------------------------------------------------

    def dead_letter(
        self,
        task: Fetched,
        reason: str,
        error_type: str | None = None,
        error: str | None = None,
        *,
        claimed: bool = False,
    ) -> bool:
        """Dead-letter a decoded task: the record, its final failure, an event; its offset is
        done once the failure is recorded. A `claimed` task (run by a handler) holds a window
        slot, which goes to the flusher with it; True when it did."""
        flusher = self._flusher()
        env = task.envelope
        now = self._clock()
        log.warning("dead-lettering task %s (%s): %s", env.id, env.name, reason)
        self._producers.dead_letter(
            DeadLetterRecord(
                original=task.raw,
                reason=reason,
                topic=self._lanes.topic(level_of(task.partition)),
                partition=partition_of(task.partition),
                offset=task.offset,
                worker_id=self._worker_id,
                at=now,
                task_id=env.id,
                name=env.name,
                attempt=env.attempt,
            )
        )
        self._events.emit(env, EventKind.DEAD_LETTERED, now, error=reason)
        if not claimed:
            with self._lock:
                if not self._book.adopt(task):
                    return False
        write = CompletionWrite(
            env.id,
            error_type=error_type or "DeadLettered",
            error=error if error is not None else reason,
            at=now,
            worker_id=self._worker_id,
        )
        flusher.submit(Finished(task, write, holds_slot=claimed))
        return claimed

    def dead_letter_raw(self, rec: Undecodable) -> None:
        """Dead-letter a record that is not a task (its offset is already done)."""
        log.warning("dead-lettering %s/%d: %s", rec.partition, rec.offset, rec.reason)
        self._producers.dead_letter(
            DeadLetterRecord(
                original=rec.raw,
                reason=rec.reason,
                topic=self._lanes.topic(level_of(rec.partition)),
                partition=partition_of(rec.partition),
                offset=rec.offset,
                worker_id=self._worker_id,
                at=self._clock(),
            )
        )

    # ---- the flusher's hook -----------------------------------------------------------

    def after_record(self, items: Sequence[Finished]) -> None:
        """Completions are recorded: mark their offsets done, say so in events."""
        now = self._clock()
        with self._lock:
            for item in items:
                self._book.recorded(item.task)
            self._lock.notify_all()
        for item in items:
            if item.holds_slot:  # a handler's run (a claimed task): it ended, recorded
                self._runs.drop(item.task.envelope.id)
        for item in items:
            env = item.task.envelope
            if not item.recorded:
                log.info("task %s had already completed; its record is kept", env.id)
            elif item.write.ok:
                self._events.emit(env, EventKind.SUCCEEDED, now)

    def _flusher(self) -> Flusher:
        assert self.flusher is not None, "TaskRunner.flusher is set before handlers start"
        return self.flusher

    def _rng(self) -> random.Random:
        rng: random.Random | None = getattr(self._rngs, "rng", None)
        if rng is None:
            rng = self._rngs.rng = random.Random()
        return rng
