"""The producer side: submit tasks to `<ns>.tasks` and follow them through Redis.

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
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis as redis_lib
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from coordinator.errors import BrokerUnavailableError, RingleaderError
from worker.envelope import Envelope, encode, new_task_id
from worker.errors import EnvelopeError, WorkerError
from worker.results import ResultStore, Status
from worker.routing import Topics, partition_for, topics
from worker.settings import AppSettings

if TYPE_CHECKING:
    from worker.batches import BatchHandle, BatchWriter

__all__ = [
    "BrokerUnavailableError",
    "Client",
    "RedisUnavailableError",
    "SubmitError",
    "TaskHandle",
    "TaskSpec",
    "idempotent_task_id",
]

# How long `result()` blocks per Redis call when waiting without a deadline.
_WAIT_CHUNK = 60.0


class SubmitError(WorkerError):
    """The broker refused or did not acknowledge a submission.

    For `submit_many`, `acknowledged` holds the handles of the tasks that did get through.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool = False,
        acknowledged: Sequence[TaskHandle] = (),
    ) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.acknowledged = list(acknowledged)


class RedisUnavailableError(WorkerError):
    """Redis (results and statuses) could not be reached."""

    retriable = True


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task for `submit_many` / `submit_batch` (a Mapping with these keys also works)."""

    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    key: str | bytes | None = None
    priority: int = 0
    idempotency_key: str | None = None
    not_before: float | None = None


_SPEC_FIELDS = frozenset(TaskSpec.__dataclass_fields__)


def as_spec(spec: TaskSpec | Mapping[str, Any]) -> TaskSpec:
    if isinstance(spec, TaskSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"a task spec must be a TaskSpec or a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise TypeError(f"unknown task spec fields {unknown}; allowed: {sorted(_SPEC_FIELDS)}")
    if "name" not in spec:
        raise TypeError("a task spec needs a 'name'")
    return TaskSpec(**spec)


def idempotent_task_id(namespace: str, idempotency_key: str) -> str:
    """The task id every submission with this key gets in this namespace."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ringleader:{namespace}:{idempotency_key}").hex


class TaskHandle:
    """A submitted, acknowledged task: `id`, `status()`, `result(timeout=...)`."""

    __slots__ = ("_client", "id", "name", "offset", "partition")

    def __init__(self, client: Client, task_id: str, name: str, partition: int, offset: int):
        self._client = client
        self.id = task_id
        self.name = name
        self.partition = partition  # where the broker put it on <ns>.tasks
        self.offset = offset

    def status(self) -> Status:
        """The stored status; PENDING while no worker has reported on it yet."""
        return self._client.status(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """The task's return value; raises TaskError if it failed for good, ResultTimeout if
        nothing arrived within `timeout` seconds (None: wait as long as it takes)."""
        return self._client.result(self.id, timeout)

    def __repr__(self) -> str:
        return f"TaskHandle(id={self.id!r}, name={self.name!r}, partition={self.partition})"


@dataclass(slots=True)
class _Delivery:
    """What one produced record's delivery callback reported."""

    done: bool = False
    error: KafkaError | None = None
    partition: int = -1
    offset: int = -1

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.error = err
        else:
            self.partition = msg.partition() or 0
            self.offset = msg.offset() or 0
        self.done = True


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
        self.topics: Topics = topics(settings.namespace)
        self.submit_timeout = submit_timeout
        self.connect_timeout = connect_timeout
        config: dict[str, str | int | float | bool] = {
            **settings.librdkafka_config(),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 1,
            # librdkafka gives up on a record after this; our own wait is bounded the same.
            "message.timeout.ms": int(submit_timeout * 1000),
            # Room for an envelope at the limit plus record overhead.
            "message.max.bytes": max(1_000_000, settings.max_payload_bytes + 65_536),
            # A metadata request must not make the broker create <ns>.tasks with its default
            # partition count (seen on Apache Kafka): we create it with the App's settings.
            "allow.auto.create.topics": False,
        }
        config.update(producer_config or {})
        self._producer = Producer(config)
        self._partitions: int | None = None
        self._meta_lock = threading.Lock()
        self._store: ResultStore | None = None
        self._redis: redis_lib.Redis[bytes] | None = None
        self._batches: BatchWriter | None = None
        self._closed = False

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
    ) -> TaskHandle:
        """Submit one task; returns once the broker acknowledged it.

        Raises PayloadTooLarge / EnvelopeError for a task that cannot be sent (nothing is
        produced), BrokerUnavailableError if the broker cannot be reached in time, SubmitError
        if it refused the record.
        """
        spec = TaskSpec(name, args or (), kwargs or {}, key, priority, idempotency_key, not_before)
        return self.submit_many([spec])[0]

    def submit_many(self, specs: Iterable[TaskSpec | Mapping[str, Any]]) -> list[TaskHandle]:
        """Submit many tasks at once: all are encoded first (a bad one fails the call before
        anything is produced), then produced, then flushed once; every delivery is checked.

        On a delivery failure raises SubmitError whose `acknowledged` lists what got through.
        """
        prepared = self._prepare([as_spec(s) for s in specs], batch=None)
        return self._produce(prepared)

    def submit_batch(self, specs: Iterable[TaskSpec | Mapping[str, Any]]) -> BatchHandle:
        """Submit tasks that run all or not at all: see `worker.batches.BatchWriter`."""
        return self.batches.submit([as_spec(s) for s in specs])

    @property
    def batches(self) -> BatchWriter:
        """The batch writer (its 2PC log producer is made on first use)."""
        if self._batches is None:
            from worker.batches import BatchWriter

            self._batches = BatchWriter(self)
        return self._batches

    def _prepare(
        self, specs: list[TaskSpec], batch: str | None
    ) -> list[tuple[Envelope, bytes, bytes | None, int | None]]:
        """Envelope, encoded bytes, record key and explicit partition of each spec."""
        self._check_open()
        partitions = self.partition_count() if any(s.key is not None for s in specs) else None
        now = time.time()
        out = []
        limit = self.settings.max_payload_bytes
        ns = self.settings.namespace
        for i, s in enumerate(specs):
            where = f"task {i} ({s.name!r})" if len(specs) > 1 else f"task {s.name!r}"
            if s.key is not None and not isinstance(s.key, str | bytes):
                raise EnvelopeError(
                    f"{where}: key must be str or bytes, got {type(s.key).__name__}"
                )
            if s.not_before is not None and (
                isinstance(s.not_before, bool) or not isinstance(s.not_before, int | float)
            ):
                raise EnvelopeError(f"{where}: not_before must be epoch seconds (a number)")
            if s.idempotency_key is not None and (
                not isinstance(s.idempotency_key, str) or not s.idempotency_key
            ):
                raise EnvelopeError(f"{where}: idempotency_key must be a non-empty string")
            task_id = (
                new_task_id()
                if s.idempotency_key is None
                else idempotent_task_id(ns, s.idempotency_key)
            )
            args = list(s.args) if isinstance(s.args, list | tuple) else s.args
            env = Envelope(
                id=task_id,
                name=s.name,
                args=args,  # type: ignore[arg-type]  # validated by encode
                kwargs=dict(s.kwargs) if isinstance(s.kwargs, Mapping) else s.kwargs,
                priority=s.priority,
                idempotency_key=s.idempotency_key,
                batch=batch,
                submitted_at=now,
                not_before=None if s.not_before is None else float(s.not_before),
            )
            try:
                data = encode(env, max_size=limit)
            except EnvelopeError as e:
                e.args = (f"{where}: {e}",)
                raise
            key = s.key.encode() if isinstance(s.key, str) else s.key
            part = None if partitions is None else partition_for(key, partitions)
            out.append((env, data, key, part))
        return out

    def _produce(
        self, prepared: Sequence[tuple[Envelope, bytes, bytes | None, int | None]]
    ) -> list[TaskHandle]:
        if not prepared:
            return []
        self.partition_count()  # first contact: a clear error if the broker is unreachable
        deadline = time.monotonic() + self.submit_timeout
        topic = self.topics.tasks
        deliveries = [_Delivery() for _ in prepared]
        produce = self._producer.produce
        for (_, data, key, part), d in zip(prepared, deliveries, strict=True):
            while True:
                try:
                    if part is None:
                        produce(topic, data, key, on_delivery=d)
                    else:
                        produce(topic, data, key, part, on_delivery=d)
                    break
                except BufferError:  # local queue full: serve deliveries, then try again
                    if time.monotonic() >= deadline:
                        raise self._unacked(len(prepared), deliveries, prepared) from None
                    self._producer.poll(0.05)
                except KafkaException as e:
                    raise SubmitError(
                        f"cannot produce to {topic!r}: {e}",
                        acknowledged=self._handles(prepared, deliveries),
                    ) from e
        self._wait(deliveries, deadline)
        failed = [d for d in deliveries if d.error is not None]
        if failed or not all(d.done for d in deliveries):
            raise self._unacked(len(prepared), deliveries, prepared)
        return self._handles(prepared, deliveries)

    def _wait(self, deliveries: Sequence[_Delivery], deadline: float) -> None:
        if len(deliveries) == 1:
            # Serve callbacks until ours ran; poll returns as soon as one was served.
            d = deliveries[0]
            while not d.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._producer.poll(min(remaining, 0.1))
            return
        while not all(d.done for d in deliveries):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._producer.flush(min(remaining, 1.0))

    def _handles(
        self,
        prepared: Sequence[tuple[Envelope, bytes, bytes | None, int | None]],
        deliveries: Sequence[_Delivery],
    ) -> list[TaskHandle]:
        return [
            TaskHandle(self, env.id, env.name, d.partition, d.offset)
            for (env, *_), d in zip(prepared, deliveries, strict=True)
            if d.done and d.error is None
        ]

    def _unacked(
        self,
        total: int,
        deliveries: Sequence[_Delivery],
        prepared: Sequence[tuple[Envelope, bytes, bytes | None, int | None]],
    ) -> RingleaderError:
        acked = self._handles(prepared, deliveries)
        errors = [d.error for d in deliveries if d.error is not None]
        missing = total - len(acked)
        bs = self.settings.bootstrap
        if errors and not _is_timeout(errors[0]):
            err = errors[0]
            return SubmitError(
                f"broker {bs} refused {missing} of {total} task(s) on {self.topics.tasks!r}: "
                f"{err.str()} ({err.name()})",
                retriable=bool(err.retriable()),
                acknowledged=acked,
            )
        e = BrokerUnavailableError(
            f"broker {bs} did not acknowledge {missing} of {total} task(s) within "
            f"{self.submit_timeout:g}s (is it running and reachable?)"
        )
        e.acknowledged = acked  # type: ignore[attr-defined]
        return e

    # --- broker metadata ----------------------------------------------------------------------

    def partition_count(self) -> int:
        """Partitions of `<ns>.tasks`, created with the App's settings if it does not exist."""
        if self._partitions is not None:
            return self._partitions
        with self._meta_lock:
            if self._partitions is None:
                self._partitions = self._fetch_partitions()
            return self._partitions

    def _fetch_partitions(self) -> int:
        topic = self.topics.tasks
        bs = self.settings.bootstrap
        try:
            md = self._producer.list_topics(topic, timeout=self.connect_timeout)
        except KafkaException as e:
            raise BrokerUnavailableError(
                f"cannot reach the broker at {bs} within {self.connect_timeout:g}s: {e}"
            ) from e
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            from worker.namespace import ensure_topics

            ensure_topics(self.settings, timeout=self.connect_timeout * 3)
            md = self._producer.list_topics(topic, timeout=self.connect_timeout)
            t = md.topics.get(topic)
            if t is None or not t.partitions:
                raise BrokerUnavailableError(f"topic {topic!r} not visible on {bs}")
        return len(t.partitions)

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

    def status(self, task_id: str) -> Status:
        st = self._redis_call(lambda: self.results.get_status(task_id))
        return Status.PENDING if st is None else st

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
                raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
            completion = self._redis_call(lambda: self.results.wait_result(task_id, timeout))
            return completion.value()
        while True:
            try:
                done = self._redis_call(lambda: self.results.wait_result(task_id, _WAIT_CHUNK))
            except TimeoutError:
                continue
            return done.value()

    def _redis_call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (redis_lib.ConnectionError, redis_lib.TimeoutError) as e:
            raise RedisUnavailableError(f"cannot reach Redis at {self.settings.redis}: {e}") from e

    # --- lifecycle ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise WorkerError("client is closed")

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._producer.flush(timeout)
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


def _is_timeout(err: KafkaError) -> bool:
    return err.code() in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    )
