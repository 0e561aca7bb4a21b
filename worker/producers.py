"""The worker's one Kafka producer: dead letters (must land) and task events (best effort).

Dead letters decide whether an offset may be committed: a task whose dead-letter record was
not acknowledged must not be skipped for good. So the runtime calls `settle()` before every
offset commit; it flushes and re-produces dead letters whose delivery failed, and says whether
every dead letter produced so far is acknowledged. Events are lingered and never retried: a
lost event costs a line in `ringleader tail`, not a task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ringleader import logs
from ringleader.worker.envelope import (
    DeadLetterRecord,
    Envelope,
    EventKind,
    EventPacker,
    encode_dead_letter,
)

if TYPE_CHECKING:
    from ringleader.worker.metrics import TaskMetrics

log = logging.getLogger("ringleader.worker.producers")

_Callback = Callable[[KafkaError | None, Message], None]


class WorkerProducers:
    """Thread-safe: handler threads, the flusher and the poll loop all produce."""

    def __init__(
        self,
        config: Mapping[str, str],
        *,
        dead_letter_topic: str,
        events_topic: str,
        linger_ms: int = 5,
        events: bool = True,
    ) -> None:
        conf: dict[str, Any] = {
            **config,
            **logs.librdkafka(),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "batch.num.messages": 10000,
            "compression.type": "none",
        }
        self._producer = Producer(conf)
        self.dead_letter_topic = dead_letter_topic
        self.events_topic = events_topic
        self.events_enabled = events
        self._lock = threading.Lock()
        self._dl_unacked = 0  # dead letters produced and not yet acknowledged
        self._dl_failed: list[bytes] = []  # to produce again
        self.dead_lettered = 0
        self.events_lost = 0

    # --- producing ---------------------------------------------------------------------------

    def _produce(self, topic: str, value: bytes, key: bytes | None, cb: _Callback) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=cb)
                return
            except BufferError:  # local queue full: serve deliveries and try again
                self._producer.poll(0.05)

    def dead_letter(self, rec: DeadLetterRecord) -> None:
        self._dead_letter_bytes(encode_dead_letter(rec))

    def _dead_letter_bytes(self, value: bytes) -> None:
        with self._lock:
            self._dl_unacked += 1

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            with self._lock:
                self._dl_unacked -= 1
                if err is None:
                    self.dead_lettered += 1
                else:
                    log.warning("dead letter not delivered (%s); producing it again", err)
                    self._dl_failed.append(value)

        self._produce(self.dead_letter_topic, value, None, on_delivery)

    def tasks(self, records: Sequence[tuple[str, int, bytes]], timeout: float) -> list[bool]:
        """Put (topic, partition, envelope) records back on the task topics; which were
        acknowledged within `timeout`."""
        acked = [False] * len(records)
        pending = [len(records)]

        def on_delivery(i: int, topic: str) -> _Callback:
            def cb(err: KafkaError | None, msg: Message) -> None:
                acked[i] = err is None
                with self._lock:
                    pending[0] -= 1
                if err is not None:
                    log.warning("task not put back on %s: %s", topic, err)

            return cb

        for i, (topic, partition, value) in enumerate(records):
            while True:
                try:
                    self._producer.produce(
                        topic, value=value, partition=partition, on_delivery=on_delivery(i, topic)
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if pending[0] == 0:
                    break
            self._producer.poll(0.01)
        return acked

    def event(self, task_id: str, value: bytes) -> None:
        """Produce a task event (`encode_event` or `EventPacker` bytes), keyed by its task."""
        if not self.events_enabled:
            return
        self._produce(self.events_topic, value, task_id.encode(), self._on_event)

    def _on_event(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self.events_lost += 1

    def poll(self) -> None:
        """Serve delivery callbacks (the poll loop calls this often)."""
        self._producer.poll(0)

    # --- before committing offsets -----------------------------------------------------------

    def settle(self, timeout: float) -> bool:
        """True once every dead letter produced so far is acknowledged (within `timeout`).

        Not a flush: under load the event queue never empties, and only dead letters decide
        whether an offset may be committed.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                again, self._dl_failed = self._dl_failed, []
            for value in again:
                self._dead_letter_bytes(value)
            with self._lock:
                settled = self._dl_unacked == 0 and not self._dl_failed
            if settled or time.monotonic() >= deadline:
                return settled
            self._producer.poll(0.01)

    def close(self, timeout: float = 10.0) -> None:
        if not self.settle(timeout):
            log.warning("closing with unacknowledged dead letters")
        try:
            left = self._producer.flush(timeout)
        except KafkaException as e:
            log.warning("producer flush failed: %s", e)
            return
        if left:
            log.warning("%d events not delivered at close", left)


class TaskEvents:
    """Task events on `<ns>.events` (started, failed, retrying, succeeded, dead-lettered)."""

    def __init__(
        self, producers: WorkerProducers, worker_id: str, metrics: TaskMetrics | None = None
    ) -> None:
        self._producers = producers
        self._packer = EventPacker(worker_id)
        self._metrics = metrics  # counted here too: the events and the metrics never disagree

    def emit(
        self,
        env: Envelope,
        kind: EventKind,
        at: float,
        *,
        error: str | None = None,
        delay: float | None = None,
    ) -> None:
        if self._metrics is not None:
            self._metrics.event(env, kind, at)
        value = self._packer.pack(env.id, env.name, kind, env.attempt, at, error=error, delay=delay)
        self._producers.event(env.id, value)

    def skipped(self, env: Envelope, reason: str) -> None:
        """A copy not run (no event: it is not news); counted by reason."""
        if self._metrics is not None:
            self._metrics.skip(env.name, reason)
