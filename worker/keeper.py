"""The ledger keeper thread: keeps this worker process known to be alive, and — on the group
leader only — puts delayed tasks and retries that are due on the task topic, and evicts lapsed
registry leases (every `EVICT_INTERVAL`, under the registry's self-preservation rule), so a
SIGKILLed worker's entry goes within its lease plus one interval.

A retry waits in Redis (`worker.delayed.DelayedSet`), not in a worker's memory, so its
partition's offsets are committed past it and its worker may die meanwhile. Moving it back
is produce first, forget second: a leader that dies between the two leaves it in the set,
and the next leader produces it again; the copy that arrives second finds the attempt
already run (or running) when it begins, and is skipped (`Verdict.STALE`/`WAIT`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from ringleader.registry.backend import Eviction
from ringleader.registry.errors import RegistryError
from ringleader.worker.delayed import Delayed, DelayedSet
from ringleader.worker.lanes import LaneTopics
from ringleader.worker.ledger import TaskLedger
from ringleader.worker.producers import WorkerProducers

log = logging.getLogger("ringleader.worker.keeper")

MOVE_INTERVAL = 0.5  # seconds between looks at the delayed set (a retry's extra latency)
MOVE_BATCH = 1000
MOVE_ROUNDS = 20  # full batches moved in one look before the loop beats and looks again
MOVE_LOOK = 1.0  # seconds one look may spend moving, so the alive beat is never starved
EVICT_INTERVAL = 5.0  # seconds between the leader's evictions of lapsed registry leases


class LedgerKeeper:
    def __init__(
        self,
        ledger: TaskLedger,
        delayed: DelayedSet,
        producers: WorkerProducers,
        *,
        topic: str,
        partitions: int,
        is_leader: Callable[[], bool],
        alive_ttl: float,
        clock: Callable[[], float] = time.time,
        evict: Callable[[float], Eviction] | None = None,
    ) -> None:
        self._ledger = ledger
        self._delayed = delayed
        self._producers = producers
        self._lanes = LaneTopics(topic)
        self._partitions = partitions
        self._is_leader = is_leader
        self._alive_ttl = alive_ttl
        self._clock = clock
        self._evict = evict
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ringleader-keeper", daemon=True)

    def start(self) -> None:
        # Alive before the first task can begin: a start of a process not known to be alive
        # would count as a crash to any worker that looked.
        self._ledger.beat(self._alive_ttl)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        beat_every = max(0.2, min(1.0, self._alive_ttl / 4))
        next_beat = time.monotonic() + beat_every
        next_evict = time.monotonic() + EVICT_INTERVAL
        while not self._stop.wait(min(MOVE_INTERVAL, beat_every)):
            now = time.monotonic()
            try:
                if now >= next_beat:
                    self._ledger.beat(self._alive_ttl)
                    next_beat = now + beat_every
                if self._is_leader():
                    self.move_due()
                    if now >= next_evict:
                        next_evict = now + EVICT_INTERVAL
                        self.evict_lapsed()
            except (redis.RedisError, RegistryError) as e:
                log.warning("ledger upkeep failed: %s", e)
            except Exception:  # the thread must live on: it keeps this process known alive
                log.exception("ledger upkeep failed")

    def evict_lapsed(self) -> int:
        """Evict registry instances whose lease lapsed; returns how many went."""
        if self._evict is None:
            return 0
        ev = self._evict(self._clock())
        if ev.evicted:
            log.info("evicted %d lapsed registry lease(s) of %d", ev.evicted, ev.total)
        return ev.evicted

    def move_due(self) -> int:
        """Put due tasks on their partitions; returns how many moved. A backlog (full
        batches) is drained at once rather than one batch per look."""
        total = 0
        until = time.monotonic() + MOVE_LOOK
        for _ in range(MOVE_ROUNDS):
            due = self._delayed.due(self._clock(), MOVE_BATCH)
            if not due:
                break
            records = [self._record(d) for d in due]
            acked = self._producers.tasks(records, timeout=MOVE_LOOK * 5)
            done = [item for item, ok in zip(due, acked, strict=True) if ok]
            self._delayed.moved_many(done)
            total += len(done)
            if len(due) < MOVE_BATCH or len(done) < len(due) or self._stop.is_set():
                break
            if time.monotonic() >= until:
                break
        if total:
            log.debug("moved %d due tasks to %s", total, self._lanes.main)
        return total

    def _record(self, d: Delayed) -> tuple[str, int, bytes]:
        """Where a due task goes: its level's topic, its partition (modulo the partition count,
        should a namespace have been recreated with fewer)."""
        topic, partition = self._lanes.of_lane(d.lane)
        return topic, partition % self._partitions, d.envelope
