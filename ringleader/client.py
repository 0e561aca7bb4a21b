"""The producer API: submit tasks to `<ns>.tasks` and follow them through Redis.

`Client.submit` returns only once the broker has acknowledged the record (acks=all,
idempotent producer, delivery callback seen): a handle is proof the task will run or be
dead-lettered (Invariant 3). Nothing is written to Redis at submit, so submitting needs no
Redis and costs one produce; `TaskHandle.status()` answers "pending" for an acknowledged task
that no worker has touched yet (or whose status expired with the result TTL).

Idempotency keys: a task submitted with `idempotency_key=K` gets the task id
`uuid5(namespace, K)`, the same on every submission of K in that namespace. Workers record a
completion once per task id and skip a redelivered task that already completed, so
resubmitting K after it completed runs nothing and both handles read the same result. Two
submissions of K racing each other may both run (dedup is by completion, not by a lock).

The parts: `packing` (specs to envelope bytes), `producing.TaskProducer` (produce and check
deliveries), `batch.BatchWriter` (2PC batches), `handles` (what a submission returns).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis as redis_lib

from ringleader.batch import BatchWriter
from ringleader.errors import BrokerUnavailableError, RedisUnavailableError
from ringleader.gcpause import paused_gc
from ringleader.handles import BatchHandle, SubmitError, SubmitTimeout, TaskHandle
from ringleader.packing import TaskSpec, as_spec, due_time, idempotent_task_id
from ringleader.producing import TaskProducer
from ringleader.redisurl import redact
from ringleader.scheduling import schedule, split_due
from ringleader.worker.cancel import CancelOutcome
from ringleader.worker.cancel import cancel as cancel_task
from ringleader.worker.errors import EnvelopeError, ResultGone, ResultTimeout
from ringleader.worker.results import ResultStore, Status
from ringleader.worker.routing import Topics
from ringleader.worker.settings import AppSettings

__all__ = [
    "BatchHandle",
    "BrokerUnavailableError",
    "Client",
    "RedisUnavailableError",
    "ResultGone",
    "SubmitError",
    "SubmitTimeout",
    "TaskHandle",
    "TaskSpec",
    "idempotent_task_id",
]

# How long `result()` blocks per Redis call when waiting without a deadline.
_WAIT_CHUNK = 60.0

T = TypeVar("T")


class Client:
    """`Client(namespace=None, bootstrap=None, redis=None)`; each from RINGLEADER_* when None.

    `submit_timeout` bounds how long a submit waits for the broker's acknowledgement;
    `connect_timeout` how long the first contact with the broker may take. `producer_config`
    adds librdkafka settings (e.g. linger.ms for throughput).
    """

    def __init__(
        self,
        namespace: str | None = None,
        bootstrap: str | None = None,
        redis: str | None = None,
        *,
        settings: AppSettings | None = None,
        environ: Mapping[str, str] | None = None,
        submit_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        producer_config: Mapping[str, str | int | float | bool] | None = None,
    ) -> None:
        if settings is None:
            settings = AppSettings.from_env(
                environ, namespace=namespace, bootstrap=bootstrap, redis=redis
            )
        if not submit_timeout > 0 or not connect_timeout > 0:
            raise ValueError("submit_timeout and connect_timeout must be > 0")
        self.settings = settings
        self.submit_timeout = submit_timeout
        self.connect_timeout = connect_timeout
        self._producer = TaskProducer(
            settings,
            self,
            submit_timeout=submit_timeout,
            connect_timeout=connect_timeout,
            producer_config=producer_config,
        )
        self.topics: Topics = self._producer.topics
        self._store: ResultStore | None = None
        self._redis: redis_lib.Redis[bytes] | None = None
        self._batches: BatchWriter | None = None

    # --- submitting ---------------------------------------------------------------------------

    def submit(  # noqa: PLR0917  (the documented signature takes them positionally too)
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        key: str | bytes | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        not_before: float | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
    ) -> TaskHandle:
        """Submit one task; returns once the broker acknowledged it (or, with `countdown`
        seconds or a timezone-aware `eta`, once Redis holds it until then: see
        `ringleader.scheduling`).

        Raises PayloadTooLarge / EnvelopeError for a task that cannot be sent (nothing is
        produced), BrokerUnavailableError if the broker cannot be reached in time, SubmitError
        if it refused the record.
        """
        if countdown is not None or eta is not None:
            if not_before is not None:
                raise EnvelopeError("give not_before, countdown or eta, not several")
            not_before = due_time(countdown, eta, time.time())
        spec = TaskSpec(name, args or (), kwargs or {}, key, priority, idempotency_key, not_before)
        if not_before is None:  # the common case, straight to the producer: a round trip
            return self._producer.send(self._producer.prepare([spec]))[0]
        return self.submit_many([spec])[0]

    def submit_many(self, specs: Iterable[TaskSpec | Mapping[str, Any]]) -> list[TaskHandle]:
        """Submit many tasks at once: all are encoded first (a bad one fails the call before
        anything is produced), then produced, then flushed once; every delivery is checked.

        On a delivery failure raises SubmitError whose `acknowledged` lists what got through
        (SubmitTimeout, also a BrokerUnavailableError, when the broker did not answer in time).
        The cyclic garbage collector is paused for the call (`ringleader.gcpause`).
        """
        with paused_gc():  # see ringleader.gcpause: no cycles here, and half the time saved
            return self._submit_many([as_spec(s) for s in specs])

    def _submit_many(self, checked: list[TaskSpec]) -> list[TaskHandle]:
        prepared = self._producer.prepare(checked)
        now_idx, later = split_due([s.not_before for s in checked], time.time())
        if not later:
            return self._producer.send(prepared)
        handles: list[TaskHandle | None] = [None] * len(prepared)
        for i, h in zip(now_idx, self._producer.send([prepared[i] for i in now_idx]), strict=True):
            handles[i] = h
        parked = schedule(
            self,
            self._redis_call(lambda: self.results),
            [(prepared[i], float(checked[i].not_before or 0.0)) for i in later],
            self._producer.lane_of,
            self.settings.result_ttl,
        )
        for i, h in zip(later, parked, strict=True):
            handles[i] = h
        return [h for h in handles if h is not None]

    def submit_batch(self, specs: Iterable[TaskSpec | Mapping[str, Any]]) -> BatchHandle:
        """Submit tasks that run all or not at all: see `ringleader.batch.BatchWriter`."""
        return self.batches.submit([as_spec(s) for s in specs])

    @property
    def batches(self) -> BatchWriter:
        """The batch writer (its 2PC log producer is made on first use)."""
        if self._batches is None:
            self._batches = BatchWriter(self._producer)
        return self._batches

    def partition_count(self) -> int:
        """Partitions of `<ns>.tasks`, created with the App's settings if it does not exist."""
        return self._producer.partition_count()

    # --- results --------------------------------------------------------------------------------

    @property
    def results(self) -> ResultStore:
        """The result store (connects to Redis on first use)."""
        if self._store is None:
            # No socket timeout: wait_result blocks in Redis for its whole timeout. Said
            # explicitly: redis-py 8 otherwise reads with a 5 s timeout.
            self._redis = redis_lib.Redis.from_url(
                self.settings.redis,
                socket_connect_timeout=self.connect_timeout,
                socket_timeout=None,
            )
            self._store = ResultStore(self._redis, f"ringleader:{self.settings.namespace}")
        return self._store

    def cancel(self, task_id: str) -> CancelOutcome:
        """Cancel a task: CANCELLED (it will never start: queued, scheduled or waiting to
        retry), REQUESTED (it is running: it stops at its next `ctx.checkpoint()`), or
        FINISHED (it had already finished). See `ringleader.worker.cancel`."""
        store = self.results
        return self._redis_call(lambda: cancel_task(store, task_id, self.settings.result_ttl))

    def status(self, task_id: str) -> Status:
        st = self._redis_call(lambda: self.results.get_status(task_id))
        return Status.PENDING if st is None else st

    def result(
        self, task_id: str, timeout: float | None = None, *, acked_at: float | None = None
    ) -> Any:
        """The task's result (see `TaskHandle.result`). `acked_at` is when the broker
        acknowledged the task (time.monotonic of this process): without a timeout, a task Redis
        knows nothing about more than the result TTL after that raises ResultGone."""
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
                raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
            completion = self._redis_call(lambda: self.results.wait_result(task_id, timeout))
            return completion.value()
        store = self.results
        done = self._redis_call(lambda: store.get_completion(task_id))  # the fast path: one GET
        while done is None:
            # Between chunks: a task whose record can no longer appear must not block forever.
            reason = self._redis_call(lambda: self._gone(task_id, acked_at))
            if reason is not None:
                raise ResultGone(task_id, reason)
            chunk = self._chunk(acked_at)
            try:
                done = self._redis_call(functools.partial(store.wait_result, task_id, chunk))
            except ResultTimeout:
                continue
        return done.value()

    def _gone(self, task_id: str, acked_at: float | None) -> str | None:
        """Why no result can appear any more, or None while one still may."""
        store = self.results
        if store.get_completion(task_id) is not None:
            return None
        status = store.get_status(task_id)
        if status is Status.DEAD_LETTERED:
            return "it was dead-lettered without a result record"
        if status is not None or acked_at is None or store.has_runs(task_id):
            return None
        age, ttl = time.monotonic() - acked_at, self.settings.result_ttl
        if age <= ttl:
            return None  # not fetched yet, probably
        return (
            f"Redis knows nothing of it, {age:.0f}s after it was acknowledged (the result TTL "
            f"is {ttl:g}s): its record expired, or Redis lost it (results survive a Redis "
            "restart only with appendonly yes)"
        )

    def _chunk(self, acked_at: float | None) -> float:
        # Wake when the task could first count as expired, else every _WAIT_CHUNK seconds.
        if acked_at is None:
            return _WAIT_CHUNK
        left = acked_at + self.settings.result_ttl - time.monotonic()
        return left + 0.1 if 0 < left < _WAIT_CHUNK else _WAIT_CHUNK

    def _redis_call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as e:
            raise RedisUnavailableError(
                f"cannot reach Redis at {redact(self.settings.redis)}: {e}"
            ) from e

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        if self._producer.closed:
            return
        self._producer.close(timeout)
        if self._batches is not None:
            self._batches.close(timeout)
        if self._redis is not None:
            self._redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.settings
        return f"Client(namespace={s.namespace!r}, bootstrap={s.bootstrap!r})"
