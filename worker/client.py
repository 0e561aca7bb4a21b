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

import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

import msgpack
import redis as redis_lib
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ringleader.coordinator.errors import BrokerUnavailableError, RingleaderError
from ringleader.worker.envelope import SCHEMA_VERSION
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge, WorkerError
from ringleader.worker.results import ResultStore, Status
from ringleader.worker.routing import Topics, partition_for, topics
from ringleader.worker.settings import AppSettings

if TYPE_CHECKING:
    from ringleader.worker.batches import BatchHandle, BatchWriter

__all__ = [
    "BrokerUnavailableError",
    "Client",
    "RedisUnavailableError",
    "SubmitError",
    "TaskHandle",
    "TaskSpec",
    "idempotent_task_id",
]

# (task id, task name, envelope bytes, record key, explicit partition or None)
Prepared = tuple[str, str, bytes, bytes | None, int | None]

# isinstance(x, str) without a Python frame per key (the submit path checks every kwarg key).
_is_str = str.__instancecheck__

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


_NO_KWARGS: Mapping[str, Any] = MappingProxyType({})


class TaskSpec(NamedTuple):
    """One task for `submit_many` / `submit_batch` (a Mapping with these keys also works).

    A NamedTuple: cheap to build by the thousand (a frozen dataclass costs ~10x more).
    """

    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = _NO_KWARGS
    key: str | bytes | None = None
    priority: int = 0
    idempotency_key: str | None = None
    not_before: float | None = None


_SPEC_FIELDS = frozenset(TaskSpec._fields)


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


class _EnvelopePieces:
    """The msgpack of an envelope map, in `encode`'s key order, from cached pieces: a fixmap
    header, then each key followed by its value. Within one `_prepare` call only id, args and
    kwargs differ between the common tasks (the name's piece is cached per name, the tail of
    priority .. not_before per priority when there is no idempotency key or not_before)."""

    def __init__(self, packb: Callable[[Any], bytes], batch: str | None, now: float) -> None:
        self._packb = packb
        self._batch = batch
        self._now = now
        self._head = b"\x8b" + packb("v") + packb(SCHEMA_VERSION) + packb("id")  # 11 keys
        self._kwargs_key = packb("kwargs")
        self._names: dict[str, bytes] = {}
        self._tails: dict[int, bytes] = {}

    def _tail(self, priority: int, ikey: str | None, nb: float | None) -> bytes:
        p = self._packb
        return b"".join(
            (
                p("priority"),
                p(priority),
                p("attempt"),
                p(1),
                p("idempotency_key"),
                p(ikey),
                p("batch"),
                p(self._batch),
                p("submitted_at"),
                p(self._now),
                p("not_before"),
                p(nb),
            )
        )

    def envelope(
        self,
        task_id: str,
        name: str,
        args: list[Any],
        kwargs: dict[str, Any],
        *,
        priority: int,
        ikey: str | None,
        nb: float | None,
    ) -> bytes:
        p = self._packb
        name_piece = self._names.get(name)
        if name_piece is None:
            name_piece = self._names[name] = p("name") + p(name) + p("args")
        if ikey is None and nb is None:
            tail = self._tails.get(priority)
            if tail is None:
                tail = self._tails[priority] = self._tail(priority, None, None)
        else:
            tail = self._tail(priority, ikey, nb)
        return b"".join(
            (self._head, p(task_id), name_piece, p(args), self._kwargs_key, p(kwargs), tail)
        )


def _acked(
    prepared: Sequence[Prepared],
    handles: list[TaskHandle],
    failures: Sequence[tuple[KafkaError, bytes | None]],
) -> list[TaskHandle]:
    """The handles of records produced (`handles[i]` is `prepared[i]`'s) that did not fail."""
    failed = {v for _, v in failures}
    return [h for h, p in zip(handles, prepared, strict=False) if p[2] not in failed]


class TaskHandle:
    """A submitted, acknowledged task: `id`, `status()`, `result(timeout=...)`."""

    __slots__ = ("_client", "id", "name", "partition")

    def __init__(self, client: Client, task_id: str, name: str, partition: int | None) -> None:
        self._client = client
        self.id = task_id
        self.name = name
        # The partition of <ns>.tasks: murmur2 of the key, else the client's round robin.
        self.partition = partition

    def status(self) -> Status:
        """The stored status; PENDING while no worker has reported on it yet."""
        return self._client.status(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """The task's return value; raises TaskError if it failed for good, ResultTimeout if
        nothing arrived within `timeout` seconds (None: wait as long as it takes)."""
        return self._client.result(self.id, timeout)

    def __repr__(self) -> str:
        return f"TaskHandle(id={self.id!r}, name={self.name!r})"


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
            "linger.ms": 5,
            # librdkafka gives up on a record after this; our own wait is bounded the same.
            "message.timeout.ms": int(submit_timeout * 1000),
            # Room for an envelope at the limit plus record overhead.
            "message.max.bytes": max(1_000_000, settings.max_payload_bytes + 65_536),
            # A metadata request must not make the broker create <ns>.tasks with its default
            # partition count (seen on Apache Kafka): we create it with the App's settings.
            "allow.auto.create.topics": False,
            "delivery.report.only.error": True,  # see _produce
        }
        config.update(producer_config or {})
        self._producer = Producer(config)
        self._partitions: int | None = None
        # Round robin for unkeyed tasks, from a random start so that clients do not all begin
        # at partition 0 (next() on itertools.count is atomic under the GIL).
        self._spread = itertools.count(int.from_bytes(os.urandom(2), "big"))
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
            from ringleader.worker.batches import BatchWriter

            self._batches = BatchWriter(self)
        return self._batches

    def _prepare(self, specs: list[TaskSpec], batch: str | None) -> list[Prepared]:
        """(task id, name, envelope bytes, record key, explicit partition) of each spec.

        The hot path of submitting: envelopes are packed here from pieces, byte for byte what
        `worker.envelope.encode` writes (a test holds the two together), with its checks. Only
        id, args and kwargs are packed per task; the other fields repeat within a call.
        """
        self._check_open()
        partitions: int | None = None  # looked up at the first key (it may contact the broker)
        now = time.time()
        limit = self.settings.max_payload_bytes
        ns = self.settings.namespace
        packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        pieces = _EnvelopePieces(packb, batch, now)
        block = os.urandom(16 * len(specs)).hex()  # one syscall for every task id
        out: list[Prepared] = []
        for i, s in enumerate(specs):
            name, args, kwargs, ikey, nb = s.name, s.args, s.kwargs, s.idempotency_key, s.not_before
            if type(name) is not str or not name:
                self._bad(specs, i, f"name must be a non-empty string, got {name!r}")
            if type(args) is not list:
                if not isinstance(args, list | tuple):
                    self._bad(specs, i, f"args must be a list, got {type(args).__name__}")
                args = list(args)
            if type(kwargs) is not dict:
                if not isinstance(kwargs, Mapping):
                    self._bad(specs, i, f"kwargs must be a dict, got {type(kwargs).__name__}")
                kwargs = dict(kwargs)
            if kwargs and not all(map(_is_str, kwargs)):
                self._bad(specs, i, "kwargs must be a dict with string keys")
            if type(s.priority) is not int:
                self._bad(specs, i, f"priority must be an int, got {s.priority!r}")
            if ikey is None:
                task_id = block[32 * i : 32 * i + 32]
            else:
                if type(ikey) is not str or not ikey:
                    self._bad(specs, i, "idempotency_key must be a non-empty string")
                task_id = idempotent_task_id(ns, ikey)
            if nb is not None:
                if isinstance(nb, bool) or not isinstance(nb, int | float):
                    self._bad(specs, i, "not_before must be epoch seconds (a number)")
                nb = float(nb)
            try:
                data = pieces.envelope(
                    task_id, name, args, kwargs, priority=s.priority, ikey=ikey, nb=nb
                )
            except (TypeError, ValueError, OverflowError) as e:
                self._bad(specs, i, f"not msgpack-serialisable: {e}")
            if len(data) > limit:
                err = PayloadTooLarge(len(data), limit)
                err.args = (f"{_where(specs, i)}: {err}",)
                raise err
            key = s.key
            if key is not None:
                if isinstance(key, str):
                    key = key.encode()
                elif not isinstance(key, bytes):
                    self._bad(specs, i, f"key must be str or bytes, got {type(key).__name__}")
            part = None
            if key is not None:
                if partitions is None:
                    partitions = self.partition_count()
                part = partition_for(key, partitions)
            out.append((task_id, name, data, key, part))
        return out

    @staticmethod
    def _bad(specs: Sequence[TaskSpec], i: int, why: str) -> NoReturn:
        raise EnvelopeError(f"{_where(specs, i)}: {why}")

    def _produce(self, prepared: Sequence[Prepared]) -> list[TaskHandle]:
        """Produce, flush, and check every delivery.

        The producer reports failed deliveries only (`delivery.report.only.error`: a Python
        callback per record would cost as much as the produce call); a record is acknowledged
        when flush() has emptied the queue and no failure was reported for it.
        """
        if not prepared:
            return []
        # First contact: a clear error if the broker is unreachable. Unkeyed tasks are dealt
        # round robin over the partitions: librdkafka's sticky partitioner would put a whole
        # burst on one partition, so one worker would run it while the others sit idle.
        partitions = self.partition_count()
        spread = self._spread
        deadline = time.monotonic() + self.submit_timeout
        topic = self.topics.tasks
        failures: list[tuple[KafkaError, bytes | None]] = []

        def on_error(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failures.append((err, msg.value()))

        produce = self._producer.produce
        # One handle per record produced, in order; the ones whose delivery failed are
        # dropped at the end (delivery reports arrive only for failures).
        handles: list[TaskHandle] = []
        handle = handles.append
        for task_id, name, data, key, keyed in prepared:
            part = next(spread) % partitions if keyed is None else keyed
            while True:
                try:
                    produce(topic, data, key, part, on_delivery=on_error)
                    break
                except BufferError:  # local queue full: serve deliveries, then try again
                    if time.monotonic() >= deadline:
                        self._flush(deadline + 1.0)  # what was queued: settled, or given up
                        raise self._failed(prepared, handles, failures, unsent=True) from None
                    self._producer.poll(0.05)
                except KafkaException as e:
                    self._flush(deadline)
                    raise SubmitError(
                        f"cannot produce to {topic!r}: {e}",
                        acknowledged=_acked(prepared, handles, failures),
                    ) from e
            handle(TaskHandle(self, task_id, name, part))
        left = self._flush(deadline)
        if failures or left:
            raise self._failed(prepared, handles, failures, unconfirmed=left > 0)
        return handles

    def _flush(self, deadline: float) -> int:
        """Flush until the queue is empty or the deadline; returns what is left in it.

        flush() sends at once (it skips linger.ms) and serves the delivery reports.
        """
        left = 1
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            left = self._producer.flush(min(remaining, 0.5))
        return left

    def _failed(
        self,
        prepared: Sequence[Prepared],
        handles: list[TaskHandle],
        failures: Sequence[tuple[KafkaError, bytes | None]],
        *,
        unsent: bool = False,
        unconfirmed: bool = False,
    ) -> RingleaderError:
        total = len(prepared)
        # Records still queued are neither acknowledged nor failed: claim none of them.
        acked = [] if unconfirmed or unsent else _acked(prepared, handles, failures)
        missing = total - len(acked)
        bs = self.settings.bootstrap
        if failures and not _is_timeout(failures[0][0]):
            err = failures[0][0]
            return SubmitError(
                f"broker {bs} refused {len(failures)} of {total} task(s) on "
                f"{self.topics.tasks!r}: {err.str()} ({err.name()})",
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
            from ringleader.worker.namespace import ensure_topics

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


def _where(specs: Sequence[TaskSpec], i: int) -> str:
    name = specs[i].name
    return f"task {i} ({name!r})" if len(specs) > 1 else f"task {name!r}"


def _is_timeout(err: KafkaError) -> bool:
    return err.code() in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    )
