"""Threads of a worker: a bounded pool of handler threads and the completion flusher.

Handler threads take begun tasks from the starter's `ReadyQueue` and run them. A finished
task is handed to the flusher, which records the completions of every thread in one Redis round trip
(`ResultStore.write`) — group commit. A task starts only with a slot of the `RecordWindow`,
which the flusher gives back once its completion is recorded, so at any moment at most
`window` tasks of this worker have run without their completion being recorded: the bound on
duplicate executions when the worker is killed. Handlers do not wait for their own record, so
short tasks keep running while the previous ones are written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import redis

from ringleader.worker.book import Fetched
from ringleader.worker.results import CompletionWrite, ResultStore, RetryWrite, RunOf, Status

log = logging.getLogger("ringleader.worker.pool")

POP_WAIT = 0.2  # seconds a thread waits for work before it looks at closing
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class RecordWindow:
    """At most `size` slots taken at once; `acquire` blocks while all are taken.

    A handler takes a slot before it starts a task; the slot comes back when the task's
    completion is recorded, or at once when the task ends without one (a retry, a park).
    """

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"window size must be an integer >= 1, got {size!r}")
        self.size = size
        self._used = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self) -> bool:
        """Take a slot; False (no slot taken) once the window is closed."""
        with self._cond:
            while self._used >= self.size and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._used += 1
            return True

    def release(self, n: int = 1) -> None:
        if n <= 0:
            return
        with self._cond:
            if self._used < n:
                raise RuntimeError(f"releasing {n} slots, {self._used} taken")
            self._used -= n
            # Always: waking only when the window was full lost wakeups (two releases before
            # the first woken waiter ran left a waiter asleep beside free slots, holding a
            # popped task whose offset then never completed).
            self._cond.notify(n)

    @property
    def used(self) -> int:
        return self._used

    def close(self) -> None:
        """Wake every waiter; later acquires fail."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Source(Protocol[T_co]):
    """What handler threads pop from: a `SchedulingQueue` or the starter's `ReadyQueue`."""

    def pop(self, now: float, timeout: float | None = None) -> T_co | None: ...

    @property
    def closed(self) -> bool: ...


class HandlerPool(Generic[T]):
    """`concurrency` daemon threads calling `run(item)` for each item popped from `queue`."""

    def __init__(
        self,
        queue: Source[T],
        concurrency: int,
        run: Callable[[T], None],
        *,
        clock: Callable[[], float] = time.time,
        name: str = "ringleader-handler",
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._queue = queue
        self._run = run
        self._clock = clock
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(concurrency)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        queue = self._queue
        while not queue.closed:
            task = queue.pop(self._clock(), POP_WAIT)
            if task is None:
                continue
            try:
                self._run(task)
            except Exception:
                # run() handles task failures itself; this is a bug in the runtime. Keep the
                # thread alive: the task's offset stays pending and is redelivered later.
                log.exception("handler crashed")

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


@dataclass(slots=True)
class Finished:
    """A task that ended (succeeded or dead-lettered): its completion to record."""

    task: Fetched
    write: CompletionWrite | RetryWrite  # a retry ends the run too: its next attempt waits
    holds_slot: bool = False  # its window slot is given back once it is recorded
    recorded: bool = False  # set by the flusher: False when it had already completed


AfterRecord = Callable[[Sequence[Finished]], None]


class Flusher:
    """Records completions and statuses in batches; calls `after` with each recorded batch,
    then gives the batch's window slots back.

    "started" statuses are written lazily: only for tasks still running `started_after`
    seconds after they began, so a short task costs no status write of its own (its
    completion sets the terminal status). Redis errors are logged and retried (with a capped
    backoff) — never raised into handler threads: the waiting handlers keep waiting, which
    bounds the work done meanwhile.
    """

    def __init__(
        self,
        store: ResultStore,
        ttl: float,
        after: AfterRecord,
        window: RecordWindow,
        *,
        max_batch: int = 1000,
        started_after: float | None = 0.1,
        clock: Callable[[], float] = time.monotonic,
        name: str = "ringleader-flusher",
        run: RunOf | None = None,
    ) -> None:
        self._store = store
        self._run = run
        self._ttl = ttl
        self._after = after
        self._window = window
        self._max_batch = max_batch
        self._started_after = started_after
        self._clock = clock
        self._cond = threading.Condition()
        self._items: list[Finished] = []
        self._statuses: list[tuple[str, Status]] = []
        self._running: dict[str, float] = {}  # task id -> when it started (not announced yet)
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: Finished) -> None:
        """Hand over a completion to record (never waits; dropped once closed)."""
        with self._cond:
            self._running.pop(item.write.task_id, None)
            if self._closed:
                return
            self._items.append(item)
            if not self._busy:
                self._cond.notify()

    def started(self, task_id: str) -> None:
        """A task began; its "started" status is written if it is still running later."""
        if self._started_after is None:
            return
        with self._cond:
            self._running[task_id] = self._clock()

    def abandoned(self, task_id: str) -> None:
        """A run stopped with no outcome of its own (its claim lapsed): nothing is written."""
        with self._cond:
            self._running.pop(task_id, None)

    def status(self, task_id: str, status: Status) -> None:
        """A non-terminal status, written with the next batch (never waits)."""
        with self._cond:
            self._running.pop(task_id, None)
            self._statuses.append((task_id, status))
            self._cond.notify()

    def _due_started(self) -> list[tuple[str, Status]]:
        if not self._running or self._started_after is None:
            return []
        cutoff = self._clock() - self._started_after
        due = [tid for tid, at in self._running.items() if at <= cutoff]
        for tid in due:
            del self._running[tid]
        return [(tid, Status.STARTED) for tid in due]

    def _loop(self) -> None:
        backoff = 0.05
        while True:
            with self._cond:
                while True:
                    self._statuses.extend(self._due_started())
                    if self._items or self._statuses or self._closed:
                        break
                    self._cond.wait(self._started_after if self._running else None)
                if self._closed and not self._items and not self._statuses:
                    return
                items, self._items = self._items[: self._max_batch], self._items[self._max_batch :]
                statuses, self._statuses = self._statuses, []
                self._busy = True
            try:
                self._write(statuses, items)
            except redis.RedisError as e:
                log.warning("recording %d completions failed (%s); retrying", len(items), e)
                with self._cond:
                    self._items[:0] = items
                    self._statuses[:0] = statuses
                    self._busy = False
                    closed = self._closed
                if closed:
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            try:
                self._after(items)
            except Exception:
                log.exception("after-record hook failed")
            self._release(items)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _write(self, statuses: list[tuple[str, Status]], items: list[Finished]) -> None:
        done = [i for i in items if isinstance(i.write, CompletionWrite)]
        retried = [i for i in items if isinstance(i.write, RetryWrite)]
        _, done_flags, retry_flags = self._store.write(
            statuses,
            [i.write for i in done if isinstance(i.write, CompletionWrite)],
            self._ttl,
            retries=[i.write for i in retried if isinstance(i.write, RetryWrite)],
            run=self._run,
        )
        for item, flag in zip(done + retried, done_flags + retry_flags, strict=True):
            item.recorded = flag

    def _release(self, items: Sequence[Finished]) -> None:
        self._window.release(sum(1 for item in items if item.holds_slot))

    def wait_idle(self, timeout: float) -> bool:
        """Block until everything submitted so far is recorded (True) or `timeout` passes."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Record what is pending (within `timeout`), then stop; the window is closed, so
        handlers waiting for a slot give up."""
        self.wait_idle(timeout)
        with self._cond:
            self._closed = True
            self._items = []
            self._cond.notify_all()
        self._window.close()
        self._thread.join(timeout)
