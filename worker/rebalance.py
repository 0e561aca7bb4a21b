"""The rebalance handler: what the worker does when the member is assigned, revoked or fenced.

`revoked` returns before any other member can be given the partitions: it stops their tasks
from starting, lets the running ones finish (bounded by `drain_timeout`), commits their final
positions, and only then lets them go. Eager revokes run on the member thread; cooperative
moves on a release thread of the member's while the other partitions keep running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from ringleader.worker.book import PartitionBook
from ringleader.worker.committer import OffsetCommitter
from ringleader.worker.fetcher import AssignPartitions, Control, UnassignPartitions
from ringleader.worker.lanes import lanes_of, partitions_of
from ringleader.worker.queues import SchedulingQueue

log = logging.getLogger("ringleader.worker")


class Announcer(Protocol):
    """Where the worker tells the registry which partitions it holds."""

    def update(self, partitions: Sequence[int], generation: int) -> None: ...


class RebalanceHandler:
    def __init__(
        self,
        *,
        book: PartitionBook,
        lock: threading.Condition,
        queue: SchedulingQueue,
        post: Callable[[Control], None],
        committer: OffsetCommitter,
        announcer: Announcer,
        drain_timeout: float,
        on_fatal: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._book = book
        self._lock = lock
        self._queue = queue
        self._post = post
        self._committer = committer
        self._announcer = announcer
        self._drain_timeout = drain_timeout
        self._on_fatal = on_fatal
        self._clock = clock

    def assigned(self, generation: int, partitions: Sequence[int], member_id: str) -> None:
        with self._lock:
            self._book.hold(generation, member_id)
        self._post(AssignPartitions(generation, tuple(partitions)))
        self._announcer.update(partitions, generation)

    def revoked(self, partitions: Sequence[int], drain_timeout: float | None = None) -> None:
        """`drain_timeout` (default: the worker's) bounds the wait for running tasks."""
        t0 = self._clock()
        deadline = t0 + (self._drain_timeout if drain_timeout is None else drain_timeout)
        with self._lock:
            rev = self._book.revoke(lanes_of(partitions))  # every priority level's
        for ln in rev.partitions:
            self._queue.drain_partition(ln)
        self._post(UnassignPartitions(tuple(rev.partitions)))
        # Let running tasks of these partitions finish and their completions be recorded.
        with self._lock:
            finished = self._lock.wait_for(
                lambda: self._book.drained(rev), max(0.0, deadline - self._clock())
            )
            left = self._book.inflight(rev)
        if not finished:
            log.warning("revoke: abandoning running tasks %s after %.1fs", left, self._clock() - t0)
        self._committer.commit_revoked(rev, deadline)
        with self._lock:
            self._book.forget(rev)
            active = partitions_of(self._book.active())
            # A cooperative move keeps the generation for what stays; eager holds nothing now.
            generation = self._book.generation if active else -1
        self._announcer.update(active, generation)
        log.info("revoked %s in %.3fs", partitions_of(rev.partitions), self._clock() - t0)

    def fenced(self, reason: str, fatal: bool) -> None:
        if fatal:
            log.error("fenced for good (%s); stopping", reason)
            self._on_fatal(reason)
