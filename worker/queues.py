"""Scheduling inside one worker, after kube-scheduler's scheduling queue.

Three queues: *active* (ready now; higher priority first, FIFO among equal priority), *backoff*
(retries and not-before tasks, ready at a time), and *unschedulable* (tasks whose downstream
service is unavailable; moved back to active when told the service recovered, at the time the
service said to retry, or after `unschedulable_max_age` — kube's periodic flush).

Time is never read here: callers pass `now` (wall-clock seconds, the same clock as envelope
`not_before` and the retry times they compute). `pop` blocks on a condition for at most one
wait, bounded by its timeout and by the next due time as of `now`, and returns None when nothing
became ready; handler threads call it in a loop with a fresh `now`.
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, field

from ringleader.worker.envelope import Envelope

DEFAULT_UNSCHEDULABLE_MAX_AGE = 60.0


@dataclass(slots=True)
class QueuedTask:
    """A fetched task: its envelope and where it came from (raw bytes kept for dead letters)."""

    envelope: Envelope
    partition: int
    offset: int
    raw: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    active: int
    backoff: int
    unschedulable: int

    @property
    def total(self) -> int:
        return self.active + self.backoff + self.unschedulable


@dataclass(slots=True)
class _Parked:
    task: QueuedTask
    service: str
    due: float


class SchedulingQueue:
    """Thread-safe active/backoff/unschedulable queues for a bounded pool of handler threads."""

    def __init__(self, unschedulable_max_age: float = DEFAULT_UNSCHEDULABLE_MAX_AGE) -> None:
        if unschedulable_max_age <= 0:
            raise ValueError(f"unschedulable_max_age must be > 0, got {unschedulable_max_age}")
        self._max_age = unschedulable_max_age
        self._cond = threading.Condition()
        self._seq = 0
        self._closed = False
        self._active: list[tuple[int, int, QueuedTask]] = []  # (-priority, seq, task)
        self._backoff: list[tuple[float, int, QueuedTask]] = []  # (ready_at, seq, task)
        # Unschedulable: live entries by seq; a due-time heap with lazy deletion; seqs by service.
        self._parked: dict[int, _Parked] = {}
        self._parked_due: list[tuple[float, int]] = []
        self._by_service: dict[str, set[int]] = {}

    # --- adding -------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _activate(self, task: QueuedTask) -> None:
        heapq.heappush(self._active, (-task.envelope.priority, self._next_seq(), task))

    def push(self, task: QueuedTask, now: float) -> None:
        """A freshly fetched task: active, or backoff until its `not_before`."""
        nb = task.envelope.not_before
        if nb is not None and nb > now:
            self.push_backoff(task, nb)
            return
        with self._cond:
            self._activate(task)
            self._cond.notify()

    def push_backoff(self, task: QueuedTask, ready_at: float) -> None:
        """A task to run again at `ready_at` (a retry)."""
        with self._cond:
            heapq.heappush(self._backoff, (ready_at, self._next_seq(), task))
            # Waiters bounded their wait by the old earliest due time; let them recompute.
            self._cond.notify_all()

    def push_unschedulable(
        self, task: QueuedTask, service: str, retry_at: float | None, now: float
    ) -> None:
        """Park a task until `service` recovers, `retry_at` passes or the max age is reached."""
        due = now + self._max_age
        if retry_at is not None:
            due = min(due, retry_at)
        with self._cond:
            seq = self._next_seq()
            self._parked[seq] = _Parked(task, service, due)
            heapq.heappush(self._parked_due, (due, seq))
            self._by_service.setdefault(service, set()).add(seq)
            self._cond.notify_all()

    def move_service_back(self, service: str) -> int:
        """The downstream `service` recovered: its parked tasks become active. Returns how many."""
        with self._cond:
            seqs = self._by_service.pop(service, set())
            for seq in sorted(seqs):  # keep their parking order
                self._activate(self._parked.pop(seq).task)
            if seqs:
                self._cond.notify(len(seqs))
            return len(seqs)

    # --- taking -------------------------------------------------------------------------------

    def _flush(self, now: float) -> None:
        backoff = self._backoff
        while backoff and backoff[0][0] <= now:
            self._activate(heapq.heappop(backoff)[2])
        due = self._parked_due
        while due and due[0][0] <= now:
            _, seq = heapq.heappop(due)
            parked = self._parked.pop(seq, None)
            if parked is None:  # already moved back or drained
                continue
            peers = self._by_service.get(parked.service)
            if peers is not None:
                peers.discard(seq)
                if not peers:
                    del self._by_service[parked.service]
            self._activate(parked.task)

    def _next_due(self) -> float | None:
        times = []
        if self._backoff:
            times.append(self._backoff[0][0])
        while self._parked_due and self._parked_due[0][1] not in self._parked:
            heapq.heappop(self._parked_due)  # drop stale heads so they do not shorten waits
        if self._parked_due:
            times.append(self._parked_due[0][0])
        return min(times) if times else None

    def flush(self, now: float) -> None:
        """Move every task due at `now` to active (pop does this itself)."""
        with self._cond:
            self._flush(now)
            if self._active:
                self._cond.notify(len(self._active))

    def pop(self, now: float, timeout: float | None = None) -> QueuedTask | None:
        """The next task to run, or None after at most one bounded wait (or once closed).

        `timeout` None or 0 means do not wait.
        """
        with self._cond:
            if self._closed:
                return None
            self._flush(now)
            if not self._active and timeout:
                wait = timeout
                next_due = self._next_due()
                if next_due is not None:
                    wait = min(wait, max(0.0, next_due - now))
                if wait > 0:
                    self._cond.wait(wait)
                if self._closed:
                    return None
            if self._active:
                return heapq.heappop(self._active)[2]
            return None

    def pop_many(self, now: float, n: int, timeout: float | None = None) -> list[QueuedTask]:
        """Up to `n` tasks in priority order: one as `pop` gives it, then those ready now."""
        first = self.pop(now, timeout)
        if first is None:
            return []
        out = [first]
        with self._cond:
            while len(out) < n and self._active:
                out.append(heapq.heappop(self._active)[2])
        return out

    # --- revocation and shutdown --------------------------------------------------------------

    def drain_partition(self, partition: int) -> list[QueuedTask]:
        """Drop the not-yet-started tasks of a revoked partition (the new owner re-reads them)."""
        with self._cond:
            dropped = [t for _, _, t in self._active if t.partition == partition]
            if dropped:
                self._active = [e for e in self._active if e[2].partition != partition]
                heapq.heapify(self._active)
            backoff = [t for _, _, t in self._backoff if t.partition == partition]
            if backoff:
                self._backoff = [e for e in self._backoff if e[2].partition != partition]
                heapq.heapify(self._backoff)
                dropped += backoff
            for seq in [s for s, p in self._parked.items() if p.task.partition == partition]:
                parked = self._parked.pop(seq)
                peers = self._by_service[parked.service]
                peers.discard(seq)
                if not peers:
                    del self._by_service[parked.service]
                dropped.append(parked.task)
            return dropped

    def close(self) -> None:
        """Wake every waiting `pop`; all later pops return None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def counts(self) -> QueueCounts:
        with self._cond:
            return QueueCounts(len(self._active), len(self._backoff), len(self._parked))

    def __len__(self) -> int:
        return self.counts().total
