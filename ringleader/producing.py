"""The producer's one Kafka producer for `<ns>.tasks`: packs specs, produces, flushes, and
checks every delivery. `Client` submits through it; `BatchWriter` writes a batch's tasks
through it before committing the batch.

A task is acknowledged when the broker has it (acks=all, idempotent producer): only then does
it get a handle, and a handle is proof the task will run or be dead-lettered (Invariant 3).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Mapping, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ringleader.access import check_kafka
from ringleader.errors import BrokerUnavailableError, RingleaderError
from ringleader.handles import ResultSource, SubmitError, SubmitTimeout, TaskHandle
from ringleader.packing import Prepared, TaskSpec, pack
from ringleader.worker.lanes import Level, lane
from ringleader.worker.routing import Topics, topics
from ringleader.worker.settings import AppSettings

__all__ = ["TaskProducer"]

_Failure = tuple[KafkaError, bytes | None]
_Config = Mapping[str, str | int | float | bool]


class TaskProducer:
    """Thread-safe. `source` is what the handles it returns read results from (the Client)."""

    def __init__(
        self,
        settings: AppSettings,
        source: ResultSource,
        *,
        submit_timeout: float,
        connect_timeout: float,
        producer_config: _Config | None = None,
    ) -> None:
        self.settings = settings
        self.topics: Topics = topics(settings.namespace)
        lanes = self.topics.lanes
        self._level_topics = [lanes.topic(level) for level in Level]  # index: Level value
        self.submit_timeout = submit_timeout
        self.connect_timeout = connect_timeout
        self._source = source
        config: dict[str, object] = {
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
            "delivery.report.only.error": True,  # see send()
            # One producer-wide callback, not one per record: librdkafka then keeps no
            # Python callable per queued record (measured 0.6-1 us of each produce call).
            "on_delivery": self._on_delivery,
        }
        config.update(producer_config or {})
        self._producer = Producer(config)
        self._partitions: int | None = None
        # Round robin for unkeyed tasks, from a random start so that clients do not all begin
        # at partition 0 (next() on itertools.count is atomic under the GIL).
        self._spread = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self._meta_lock = threading.Lock()
        # Failed deliveries by record value (an envelope holds its task id, so a value names
        # one record): the callback runs in whichever thread serves the reports, and each
        # send() takes its own records' failures after its flush.
        self._failed: dict[bytes, tuple[KafkaError, float]] = {}
        self._failed_lock = threading.Lock()
        self.closed = False

    def prepare(self, specs: Sequence[TaskSpec], batch: str | None = None) -> list[Prepared]:
        """Pack the specs (see `packing.pack`); nothing is produced. Raises EnvelopeError for
        a spec that cannot be sent."""
        if self.closed:
            raise RingleaderError("client is closed")
        return pack(
            specs,
            namespace=self.settings.namespace,
            max_payload_bytes=self.settings.max_payload_bytes,
            batch=batch,
            partitions=self.partition_count,
        )

    def send(self, prepared: Sequence[Prepared]) -> list[TaskHandle]:
        """Produce, flush, and check every delivery; the handles of the acknowledged tasks.

        The producer reports failed deliveries only (`delivery.report.only.error`: a Python
        callback per record would cost as much as the produce call), to `_on_delivery`; a
        record is acknowledged when flush() has emptied the queue and no failure was reported
        for it. Raises
        SubmitError (SubmitTimeout when the broker did not answer in time) naming what was
        acknowledged.
        """
        if not prepared:
            return []
        # First contact: a clear error if the broker is unreachable. Unkeyed tasks are dealt
        # round robin over the partitions: librdkafka's sticky partitioner would put a whole
        # burst on one partition, so one worker would run it while the others sit idle.
        partitions = self.partition_count()
        spread = self._spread
        deadline = time.monotonic() + self.submit_timeout
        by_level = self._level_topics
        produce = self._producer.produce
        source = self._source
        # One handle per record produced, in order; the ones whose delivery failed are
        # dropped at the end (delivery reports arrive only for failures).
        handles: list[TaskHandle] = []
        handle = handles.append
        for task_id, name, data, key, keyed, level in prepared:
            part = next(spread) % partitions if keyed is None else keyed
            topic = by_level[level]
            try:
                produce(topic, data, key, part)
            except BufferError:  # local queue full: serve deliveries until there is room
                if not self._produce_when_room(deadline, (topic, data, key, part)):
                    self._flush(deadline + 1.0)  # what was queued: settled, or given up
                    failures = self._take_failures(prepared)
                    raise self._error(len(prepared), [], failures, left=1) from None
            except KafkaException as e:
                self._flush(deadline)
                raise SubmitError(
                    f"cannot produce to {topic!r}: {e}",
                    acknowledged=_acked(prepared, handles, self._take_failures(prepared)),
                ) from e
            handle(TaskHandle(source, task_id, name, part))
        left = self._flush(deadline)
        failures = self._take_failures(prepared)
        if failures or left:
            raise self._error(len(prepared), _acked(prepared, handles, failures), failures, left)
        return handles

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._failed_lock:
                self._failed[msg.value() or b""] = (err, time.monotonic())

    def _take_failures(self, prepared: Sequence[Prepared]) -> list[_Failure]:
        """The reported failures of these records, removed from the table."""
        if not self._failed:  # the common case: nothing failed anywhere
            return []
        with self._failed_lock:
            failed = self._failed
            mine: list[_Failure] = [(failed.pop(p[2])[0], p[2]) for p in prepared if p[2] in failed]
            # Reports that came after their send() gave up waiting: no one will take them.
            stale = time.monotonic() - 2 * self.submit_timeout
            for value in [v for v, (_, at) in failed.items() if at < stale]:
                del failed[value]
            return mine

    def _produce_when_room(
        self,
        deadline: float,
        record: tuple[str, bytes, bytes | None, int],
    ) -> bool:
        """Serve deliveries and produce again until the record fits; False at the deadline."""
        while time.monotonic() < deadline:
            self._producer.poll(0.05)
            try:
                self._producer.produce(*record)
                return True
            except BufferError:
                continue
        return False

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

    def _error(
        self, total: int, acked: list[TaskHandle], failures: Sequence[_Failure], left: int
    ) -> SubmitError:
        if left:
            acked = []  # records still queued are neither acknowledged nor failed: claim none
        bs = self.settings.bootstrap
        if failures and not _is_timeout(failures[0][0]):
            err = failures[0][0]
            return SubmitError(
                f"broker {bs} refused {len(failures)} of {total} task(s) on "
                f"{self.topics.tasks!r}: {err.str()} ({err.name()})",
                retriable=bool(err.retriable()),
                acknowledged=acked,
            )
        return SubmitTimeout(
            f"broker {bs} did not acknowledge {total - len(acked)} of {total} task(s) within "
            f"{self.submit_timeout:g}s (is it running and reachable?)",
            acknowledged=acked,
        )

    def lane_of(self, keyed: int | None, level: int) -> int:
        """The lane (`worker.lanes`) of a prepared task: its level's partition of its key,
        else the next of the round robin."""
        part = keyed if keyed is not None else next(self._spread) % self.partition_count()
        return lane(Level(level), part)

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
        # Once per client: a refusal (credentials, TLS) is a BrokerAuthError that says why,
        # where librdkafka would only time out.
        check_kafka(bs, self.settings.security, self.connect_timeout)
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

    def close(self, timeout: float = 5.0) -> None:
        """Refuse further tasks and flush what is queued."""
        self.closed = True
        self._producer.flush(timeout)


def _acked(
    prepared: Sequence[Prepared], handles: list[TaskHandle], failures: Sequence[_Failure]
) -> list[TaskHandle]:
    """The handles of records produced (`handles[i]` is `prepared[i]`'s) that did not fail."""
    failed = {v for _, v in failures}
    return [h for h, p in zip(handles, prepared, strict=False) if p[2] not in failed]


def _is_timeout(err: KafkaError) -> bool:
    return err.code() in (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    )
