"""`ringleader tail`: follow `<ns>.events` (task started/succeeded/failed/retrying/dead-lettered).

Reads with `assign()` (no consumer group, nothing committed), so any number of tails can run
side by side without disturbing each other or the workers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from ringleader.errors import BrokerUnavailableError
from ringleader.worker.envelope import TaskEvent, decode_event
from ringleader.worker.errors import EnvelopeError
from ringleader.worker.routing import topics
from ringleader.worker.settings import AppSettings

__all__ = ["event_row", "format_event", "tail"]

log = logging.getLogger("ringleader.tail")


def tail(
    settings: AppSettings,
    from_beginning: bool = False,
    *,
    idle: float | None = None,
    connect_timeout: float = 10.0,
    poll_interval: float = 0.2,
    on_bad_record: Callable[[str], None] | None = None,
) -> Iterator[TaskEvent]:
    """Yield task events as they are written (from the topic's start with `from_beginning`).

    Runs until the caller stops iterating, or until no event arrived for `idle` seconds.
    Records that do not decode are skipped and reported to `on_bad_record` (default: logged).
    Raises BrokerUnavailableError if the events topic cannot be found within `connect_timeout`.
    """
    topic = topics(settings.namespace).events
    consumer = Consumer(
        {
            **settings.librdkafka_config(),
            "group.id": f"ringleader-tail-{uuid.uuid4().hex}",  # never joined: assign() only
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 100,
            "log_level": 2,  # no per-attempt connection noise: failures raise a clear error
        }
    )
    try:
        try:
            md = consumer.list_topics(topic, timeout=connect_timeout)
        except KafkaException as e:
            raise BrokerUnavailableError(
                f"cannot reach the broker at {settings.bootstrap} within {connect_timeout:g}s: {e}"
            ) from e
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            raise BrokerUnavailableError(
                f"topic {topic!r} does not exist on {settings.bootstrap} "
                "(has a worker of this namespace ever started?)"
            )
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in sorted(t.partitions)])
        report = on_bad_record or (lambda why: log.warning("skipping an event: %s", why))
        last = time.monotonic()
        while idle is None or time.monotonic() - last < idle:
            for msg in consumer.consume(500, timeout=poll_interval):
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise BrokerUnavailableError(f"reading {topic!r} failed: {err}")
                    continue
                last = time.monotonic()
                try:
                    yield decode_event(msg.value() or b"")
                except EnvelopeError as e:
                    report(f"{topic}[{msg.partition()}]@{msg.offset()}: {e}")
    finally:
        consumer.close()


def event_row(ev: TaskEvent) -> dict[str, Any]:
    """An event as one JSON object (`ringleader tail --json`)."""
    return {
        "task_id": ev.task_id,
        "name": ev.name,
        "kind": ev.kind.value,
        "attempt": ev.attempt,
        "at": ev.at,
        "error": ev.error,
        "delay": ev.delay,
        "worker_id": ev.worker_id,
    }


def format_event(ev: TaskEvent) -> str:
    """An event as one line of text, local time to the millisecond."""
    at = time.strftime("%H:%M:%S", time.localtime(ev.at)) + f".{int(ev.at % 1 * 1000):03d}"
    line = f"{at} {ev.kind.value:<13} {ev.name} {ev.task_id} attempt {ev.attempt}"
    if ev.worker_id:
        line += f" on {ev.worker_id}"
    if ev.delay is not None:
        line += f" retry in {ev.delay:.2f}s"
    if ev.error:
        line += f": {ev.error}"
    return line
