"""The task runner: what a handler thread does with a begun task, and what follows its record.

The starter (`worker.starter`) claims a task and records its start; a handler runs it here.
Its outcome decides the rest: a success, retry or dead letter goes to the flusher, whose
record marks the offset done; a task whose downstream is unavailable is parked.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import threading
from collections.abc import Callable, Sequence

from ringleader.worker import envelope as envelope_mod
from ringleader.worker.app import App
from ringleader.worker.book import Fetched, PartitionBook, Undecodable
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
    TaskLedger,
    Verdict,
    describe_crashes,
)
from ringleader.worker.pool import Finished, Flusher, RecordWindow
from ringleader.worker.producers import TaskEvents, WorkerProducers
from ringleader.worker.queues import SchedulingQueue
from ringleader.worker.ready import Ready, ReadyQueue
from ringleader.worker.results import CompletionWrite, RetryWrite, Status

log = logging.getLogger("ringleader.worker")

# How soon a task whose lease or claim lapsed asks again (seconds).
LEASE_RECHECK = 0.1
# How soon a task whose run is in progress on another live worker asks again (seconds).
RUNNING_ELSEWHERE_RECHECK = 1.0
_SKIPPED = {Verdict.DONE: "already completed", Verdict.STALE: "was a copy of an attempt that ran"}


class TaskRunner:
    def __init__(
        self,
        app: App,
        worker_id: str,
        *,
        book: PartitionBook,
        lock: threading.Condition,
        ledger: TaskLedger,
        queue: SchedulingQueue,
        ready: ReadyQueue,
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
        self._ledger = ledger
        self._record_starts = ledger.crash_limit > 0
        self._queue = queue
        self._ready = ready
        self._window = window
        self._producers = producers
        self._events = events
        self._lanes = LaneTopics(tasks_topic)
        self._clock = clock
        self._rngs = threading.local()
        self.isolation = Isolation()  # shared with the starter
        self.runs = OwnRuns()
        self.flusher: Flusher | None = None  # set once built (it calls back `after_record`)
        self.executed = 0

    # ---- handler threads --------------------------------------------------------------

    def run(self, item: Ready) -> None:
        """Run one begun task popped from the ready queue (a handler thread)."""
        task, begin = item.task, item.begin
        started = self._clock()
        ran = handed = False
        try:
            if self._record_starts and not self._ledger.claim_held(begin.epoch):
                # Paused or cut off past the alive TTL while it waited for this thread:
                # another worker may run it now.
                log.warning("task %s lost its claim before it ran", task.envelope.id)
                self._ledger.abandon(task.envelope.id)
                self.release(task)
                self._queue.push_backoff(task, self._clock() + LEASE_RECHECK)
            else:
                ran = True
                handed = self._execute(task, begin.epoch)
        finally:
            self._end(item, handed)
            self._ready.ended(self._clock() - started if ran else None)

    def discard(self, item: Ready) -> None:
        """A begun task no handler took (the worker stops): its start is removed, so that it
        does not count as a crash, and its offset stays pending for its next owner."""
        if self._record_starts:
            self._ledger.abandon(item.task.envelope.id)
        self.release(item.task)
        self._end(item, handed=False)

    def _end(self, item: Ready, handed: bool) -> None:
        if item.alone:
            self.isolation.leave_alone()
        else:
            self.isolation.leave()
        if not handed:
            self.runs.drop(item.task.envelope.id)
            self._window.release()

    def release(self, task: Fetched) -> None:
        """Give a claimed task back to the book (it did not run to an outcome)."""
        with self._lock:
            self._book.release(task)
            self._lock.notify_all()

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
            self.release(task)
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
            self.release(task)
            return False
        assert isinstance(outcome, DeadLetter)
        if outcome.error_type is not None:
            error = f"{outcome.error_type}: {outcome.error}"
            self._events.emit(env, EventKind.FAILED, now, error=error)
        return self.dead_letter(
            task, outcome.reason, outcome.error_type, outcome.error, claimed=True
        )

    def not_run(self, task: Fetched, begin: Begin) -> bool:
        """A claimed task the ledger said not to run: True when its window slot went to the
        flusher with a record (else the caller gives it back)."""
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
            self.release(task)
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
                self.runs.drop(item.task.envelope.id)
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
