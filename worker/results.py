"""Task results and statuses in Redis.

A task's completion (success or final failure) is written once: SET NX on its completion key,
in one Lua script with the status and a wake-up token, so a redelivered task that already
completed is recognised and its result never overwritten (Invariant 4). Waiters block on the
token list with BLMOVE list→same list, which wakes them the moment the token is pushed and
leaves the token in place for other waiters and later callers — no polling.

Keys of one task share a hash tag, so they live in one slot on Redis Cluster:
`<prefix>:{<task_id>}:done|status|notify`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import msgpack
import redis as redis_lib

from ringleader.worker import delayed
from ringleader.worker.errors import EnvelopeError, ResultTimeout
from ringleader.worker.records import (
    WRITE_LUA,
    Completion,
    CompletionWrite,
    RetryWrite,
    RunOf,
    decode_record,
)

__all__ = [
    "TERMINAL",
    "Completion",
    "CompletionWrite",
    "ResultStore",
    "RetryWrite",
    "RunOf",
    "Status",
]


class Status(StrEnum):
    """The status of a task, the one set of them: stored in Redis by workers, answered by
    `TaskHandle.status()` and shown by the CLI. PENDING is never stored (no record yet); the
    terminal ones are read from the completion record. Event kinds (`envelope.EventKind`)
    are transitions, not statuses, and share these values where they coincide."""

    PENDING = "pending"
    SCHEDULED = "scheduled"  # submitted with a countdown/eta: waiting in Redis for its time
    STARTED = "started"
    CANCEL_REQUESTED = "cancel_requested"  # running; it stops at its next ctx.checkpoint()
    RETRYING = "retrying"
    UNSCHEDULABLE = "unschedulable"
    SUCCEEDED = "succeeded"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.SUCCEEDED, Status.DEAD_LETTERED, Status.CANCELLED})


def _ttl_ms(ttl: float) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValueError(f"ttl must be a number of seconds > 0, got {ttl!r}")
    if not math.isfinite(ttl):
        raise ValueError("ttl must be finite")
    return max(1, round(ttl * 1000))


class ResultStore:
    """Completions and statuses of the tasks of one namespace (`prefix` separates them)."""

    def __init__(self, client: redis_lib.Redis[bytes], prefix: str) -> None:
        """`client` must return bytes (no decode_responses) and have no socket_timeout shorter
        than the longest `wait_result` timeout (blocking commands are bounded by it)."""
        if not prefix:
            raise ValueError("prefix must not be empty")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis client must not use decode_responses (records are bytes)")
        self._r = client
        self._prefix = prefix
        self._write = client.register_script(WRITE_LUA)

    @classmethod
    def from_url(cls, url: str, namespace: str) -> ResultStore:
        return cls(redis_lib.Redis.from_url(url), f"ringleader:{namespace}")

    def _keys(self, task_id: str) -> tuple[str, str, str, str]:
        base = f"{self._prefix}:{{{task_id}}}"
        return f"{base}:done", f"{base}:status", f"{base}:notify", f"{base}:run"

    def task_keys(self, task_id: str) -> tuple[str, str, str, str, str]:
        """done, status, notify, run and cancel-flag keys of a task (one hash slot)."""
        done, status, notify, run = self._keys(task_id)
        return done, status, notify, run, f"{self._prefix}:{{{task_id}}}:cancel"

    @property
    def client(self) -> redis_lib.Redis[bytes]:
        return self._r

    @property
    def prefix(self) -> str:
        return self._prefix

    # --- writing -------------------------------------------------------------------------------

    def write(
        self,
        statuses: Sequence[tuple[str, Status]],
        writes: Sequence[CompletionWrite],
        ttl: float,
        *,
        retries: Sequence[RetryWrite] = (),
        run: RunOf | None = None,
    ) -> tuple[list[bool], list[bool], list[bool]]:
        """Set non-terminal statuses, record completions, park retries, in one round trip
        (one script, so on Redis Cluster the tasks must share a slot; a single task's keys
        always do). `run` names the worker whose runs these writes end.

        Returns (status, completion, retry flags): a status is ignored (False) once its task
        has completed; a completion is written once (False: another record was there, nothing
        written, the first result stays; True again for the very same write retried); a retry
        is not parked (False) once its task has completed.
        """
        if not statuses and not writes and not retries:
            return [], [], []
        start = run.start_field if run is not None else ""
        keys: list[str] = [
            run.running_key if run is not None else f"{self._prefix}:running:",
            self.delayed_key,
            self.delayed_env_key,
        ]
        args: list[bytes | str | int | float] = [_ttl_ms(ttl), len(statuses), len(writes), start]
        for task_id, status in statuses:
            if status in TERMINAL:
                raise ValueError(f"{status} is set by record_completion/record_failure only")
            done, key, _, runk = self._keys(task_id)
            keys += (done, key, runk)
            args += (str(status), "1" if status is Status.UNSCHEDULABLE else "0", task_id)
        for w in writes:
            done, _, notify, runk = self._keys(w.task_id)
            keys += (done, notify, runk)
            args += (w.record(), w.task_id)
        for r in retries:
            done, key, _, runk = self._keys(r.task_id)
            keys += (done, key, runk)
            args += (r.task_id, repr(r.due), r.payload())
        flags = [bool(x) for x in self._write(keys=keys, args=args)]
        ns, nc = len(statuses), len(writes)
        return flags[:ns], flags[ns : ns + nc], flags[ns + nc :]

    @property
    def delayed_key(self) -> str:
        return delayed.delayed_key(self._prefix)

    @property
    def delayed_env_key(self) -> str:
        return delayed.delayed_env_key(self._prefix)

    # --- completion ---------------------------------------------------------------------------

    def record_completion(
        self,
        task_id: str,
        result: Any,
        ttl: float,
        *,
        packed: bytes | None = None,
        at: float = 0.0,
        worker_id: str | None = None,
    ) -> bool:
        """Record a success once; False when the task had already completed (nothing written).

        `packed` is the result already as msgpack (execute's Succeeded.packed) to skip re-packing.
        """
        if packed is None:
            try:
                packed = msgpack.packb(result, use_bin_type=True)
            except (TypeError, ValueError, OverflowError) as e:
                raise EnvelopeError(f"result is not msgpack-serialisable: {e}") from e
        w = CompletionWrite(task_id, packed=packed, at=at, worker_id=worker_id)
        return self.record_many([w], ttl)[0]

    def record_failure(
        self,
        task_id: str,
        error_type: str,
        error: str,
        ttl: float,
        *,
        at: float = 0.0,
        worker_id: str | None = None,
    ) -> bool:
        """Record a final failure (dead-lettered) once; False when already completed."""
        w = CompletionWrite(task_id, error_type=error_type, error=error, at=at, worker_id=worker_id)
        return self.record_many([w], ttl)[0]

    def record_many(self, writes: Sequence[CompletionWrite], ttl: float) -> list[bool]:
        """Record several completions in one round trip; each is once-only like the others."""
        return self.write((), writes, ttl)[1]

    def is_completed(self, task_id: str) -> bool:
        return bool(self._r.exists(self._keys(task_id)[0]))

    def count_completed(self, task_ids: Sequence[str]) -> int:
        """How many of `task_ids` have a completion record (one multi-key EXISTS)."""
        if not task_ids:
            return 0
        return int(self._r.exists(*(self._keys(t)[0] for t in task_ids)))

    def completed_many(self, task_ids: Sequence[str]) -> list[bool]:
        """Which of these tasks have completed. The count comes first: it is nearly always 0
        (a task is found completed only when redelivered), which answers for all of them in
        one command; otherwise one pipelined EXISTS per task follows."""
        if not self.count_completed(task_ids):
            return [False] * len(task_ids)
        pipe = self._r.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.exists(self._keys(task_id)[0])
        return [bool(x) for x in pipe.execute()]

    def get_completion(self, task_id: str) -> Completion | None:
        raw = self._r.get(self._keys(task_id)[0])
        return None if raw is None else decode_record(task_id, raw)

    def wait_result(self, task_id: str, timeout: float) -> Completion:
        """Block until the task completes (at most `timeout` seconds); ResultTimeout otherwise."""
        done, _, notify, _ = self._keys(task_id)
        raw = self._r.get(done)
        # Moving the token to the same list wakes us without consuming it.
        if (
            raw is None
            and timeout > 0
            and self._r.blmove(notify, notify, timeout, "LEFT", "RIGHT") is not None
        ):
            raw = self._r.get(done)
        if raw is None:
            raise ResultTimeout(task_id, timeout)
        return decode_record(task_id, raw)

    def has_runs(self, task_id: str) -> bool:
        """Whether a worker left a trace of running it: its run record (attempts, starts) or a
        retry waiting in the delayed set. With no status and no completion either, nothing
        about the task is in Redis (never fetched yet, or all of it expired)."""
        _, _, _, run = self._keys(task_id)
        pipe = self._r.pipeline(transaction=False)
        pipe.exists(run)
        pipe.zscore(self.delayed_key, task_id)
        exists, score = pipe.execute()
        return bool(exists) or score is not None

    # --- status -------------------------------------------------------------------------------

    def set_status(self, task_id: str, status: Status, ttl: float) -> bool:
        """Set a non-terminal status; ignored (False) once the task has completed."""
        return self.set_statuses([(task_id, status)], ttl)[0]

    def set_statuses(self, statuses: Sequence[tuple[str, Status]], ttl: float) -> list[bool]:
        """`set_status` for several tasks in one round trip."""
        return self.write(statuses, (), ttl)[0]

    def get_status(self, task_id: str) -> Status | None:
        """The terminal status of a completed task (from its record), else the last one set."""
        done, key, _, _ = self._keys(task_id)
        record, raw = self._r.mget(done, key)
        if record is not None:
            done_as = decode_record(task_id, record)
            if done_as.cancelled:
                return Status.CANCELLED
            return Status.SUCCEEDED if done_as.ok else Status.DEAD_LETTERED
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            return Status(text)
        except ValueError:
            raise EnvelopeError(f"unknown status {text!r} stored for task {task_id}") from None
