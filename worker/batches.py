"""Atomic batches of tasks, worker side: none of them runs unless all were committed.

The producer side (`ringleader.batch.BatchWriter`) writes every task's envelope to
`<ns>.tasks` carrying `batch=<batch_id>`, then commits the batch as a 2PC transaction
(`coordinator.txlog`, kind `KIND`) on `<ns>.batches`: one part per task, named by task id,
holding `part_value` of the envelope as submitted, then the commit record (part count +
digest). A producer that dies between the tasks and the commit leaves a batch that is never
committed.

`BatchGate` reads `<ns>.batches` from its start and answers, for a task that carries a
batch id, `state(batch_id, now)`:

* "committed" — the commit was read and every part is present and matches its digest;
* "abandoned" — the commit is inconsistent, or no commit was found by a read of the whole
  log that began at least `abandon_after` seconds after this gate first asked about the batch
  (so a gate that is behind on the log never abandons a batch it simply has not read yet);
* "pending" — otherwise: hold the task and ask again.

Decisions are sticky: a batch this gate abandoned stays abandoned even if a late commit shows
up, so a worker never runs part of a batch it already dropped. `abandon_after` must therefore
be well above the producers' commit timeout (default 300 s vs 30 s). The judging logic is the
pure `BatchBook` (time passed in); `BatchGate` adds the log reader.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from ringleader.coordinator.twophase import Applied, Expired, Inconsistent, Outcome, Skipped, Unseen
from ringleader.coordinator.txlog import TxLogError, TxLogReader
from ringleader.worker.routing import topics
from ringleader.worker.settings import AppSettings

__all__ = [
    "KIND",
    "MAX_BATCH",
    "BatchBook",
    "BatchGate",
    "BatchState",
    "part_value",
]

log = logging.getLogger("ringleader.worker.batches")

KIND = "batch"
# The commit record names every part (~34 bytes a task id): keep it well under 1 MB.
MAX_BATCH = 10_000


def part_value(envelope_bytes: bytes) -> bytes:
    """What a batch part holds for one task: the SHA-256 of its envelope as submitted."""
    return hashlib.sha256(envelope_bytes).digest()


class BatchState(StrEnum):
    COMMITTED = "committed"
    PENDING = "pending"
    ABANDONED = "abandoned"


@dataclass(slots=True)
class _Decided:
    state: BatchState
    reason: str = ""
    parts: dict[str, bytes] = field(default_factory=dict)


class BatchBook:
    """Pure judge of batches: fed 2PC outcomes and "caught up" marks, asked with `now`.

    `caught_up(at)` says: a read of the whole log that began at time `at` has finished.
    Bounded: at most `keep` decided batches and `keep` batches being timed are remembered.
    """

    def __init__(self, abandon_after: float = 300.0, *, keep: int = 100_000) -> None:
        if not abandon_after > 0:
            raise ValueError(f"abandon_after must be > 0 seconds, got {abandon_after!r}")
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.abandon_after = abandon_after
        self.keep = keep
        self._decided: OrderedDict[str, _Decided] = OrderedDict()
        self._first_seen: OrderedDict[str, float] = OrderedDict()
        self._caught_up_at = float("-inf")

    def feed(self, outcome: Outcome) -> None:
        if isinstance(outcome, Skipped | Expired):
            return  # Expired: parts dropped; a later commit then reads as Inconsistent
        if outcome.txid in self._decided:
            return  # first decision wins (a rewritten commit cannot revive or kill a batch)
        if isinstance(outcome, Applied):
            self._decide(outcome.txid, _Decided(BatchState.COMMITTED, parts=outcome.parts))
        elif isinstance(outcome, Inconsistent):
            self._decide(outcome.txid, _Decided(BatchState.ABANDONED, outcome.reason))
        elif isinstance(outcome, Unseen):  # only when reading starts mid-log; gates do not
            self._decide(outcome.txid, _Decided(BatchState.ABANDONED, "parts before the log read"))

    def caught_up(self, at: float) -> None:
        self._caught_up_at = max(self._caught_up_at, at)

    def _decide(self, batch_id: str, d: _Decided) -> None:
        self._decided[batch_id] = d
        self._first_seen.pop(batch_id, None)
        while len(self._decided) > self.keep:
            self._decided.popitem(last=False)

    def state(self, batch_id: str, now: float) -> BatchState:
        d = self._decided.get(batch_id)
        if d is not None:
            return d.state
        first = self._first_seen.get(batch_id)
        if first is None:
            first = self._first_seen[batch_id] = now
            while len(self._first_seen) > self.keep:
                self._first_seen.popitem(last=False)
        if self._caught_up_at >= first + self.abandon_after:
            waited = self._caught_up_at - first
            self._decide(
                batch_id,
                _Decided(BatchState.ABANDONED, f"no commit within {waited:.0f}s of its first task"),
            )
            return BatchState.ABANDONED
        return BatchState.PENDING

    def member(self, batch_id: str, task_id: str) -> bool:
        """Whether a committed batch names this task (a task claiming a batch it is not part
        of must not run as if committed)."""
        d = self._decided.get(batch_id)
        return d is not None and d.state is BatchState.COMMITTED and task_id in d.parts

    def reason(self, batch_id: str) -> str | None:
        d = self._decided.get(batch_id)
        return None if d is None or d.state is not BatchState.ABANDONED else d.reason


class BatchGate:
    """The worker's view of `<ns>.batches`: a TxLogReader feeding a BatchBook.

    Keep it current either by calling `refresh(now)` from the worker's loop or with `start()`
    (a small thread). `now` must come from the same clock in `refresh` and `state`
    (`clock`, default time.monotonic, is what the thread uses).
    """

    def __init__(
        self,
        settings: AppSettings,
        *,
        abandon_after: float = 300.0,
        clock: Callable[[], float] | None = None,
        read_timeout: float = 5.0,
    ) -> None:
        import time

        self.topic = topics(settings.namespace).batches
        self.book = BatchBook(abandon_after)
        self.clock = clock or time.monotonic
        self.read_timeout = read_timeout
        self._reader = TxLogReader(settings.bootstrap, self.topic, KIND, security=settings.security)
        self._lock = threading.Lock()  # guards the book
        self._read_lock = threading.Lock()  # one reader call at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def refresh(self, now: float | None = None, timeout: float | None = None) -> int:
        """Read what the log holds now; returns how many outcomes were read.

        Raises TxLogError if the log cannot be read within `timeout`.
        """
        started = self.clock() if now is None else now
        with self._read_lock:
            outcomes = self._reader.read_available(
                self.read_timeout if timeout is None else timeout
            )
        with self._lock:
            for o in outcomes:
                self.book.feed(o)
            self.book.caught_up(started)
        return len(outcomes)

    def state(self, batch_id: str, now: float | None = None) -> BatchState:
        with self._lock:
            return self.book.state(batch_id, self.clock() if now is None else now)

    def member(self, batch_id: str, task_id: str) -> bool:
        with self._lock:
            return self.book.member(batch_id, task_id)

    def reason(self, batch_id: str) -> str | None:
        with self._lock:
            return self.book.reason(batch_id)

    def start(self, interval: float = 0.2) -> None:
        """Refresh every `interval` seconds on a daemon thread until `close()`."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.refresh()
                    self.last_error = None
                except TxLogError as e:
                    if self.last_error != str(e):
                        log.warning("reading %s: %s", self.topic, e)
                    self.last_error = str(e)
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="ringleader-batch-gate", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.read_timeout + 5)
            self._thread = None
        with self._read_lock:
            self._reader.close()
