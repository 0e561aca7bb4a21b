"""Create the coordination topics if they are missing (idempotent)."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined, unused-ignore]

from ringleader.coordinator.errors import BrokerUnavailableError, RingleaderError
from ringleader.security import KafkaSecurity


class TopicError(RingleaderError):
    """A topic could not be created or did not appear in the cluster metadata."""


def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 1,
    replication: int = 1,
    *,
    timeout: float = 30.0,
    security: KafkaSecurity | None = None,
) -> None:
    """Create `topic` unless it exists, then wait until metadata shows all its partitions.

    An existing topic is accepted as is (its partition count is not changed).
    """
    if partitions < 1 or replication < 1:
        raise ValueError("partitions and replication must be >= 1")
    conf = security.librdkafka_config() if security is not None else {}
    admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
    deadline = time.monotonic() + timeout
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication)],
        request_timeout=timeout,
    )
    try:
        futures[topic].result(timeout=timeout)
    except KafkaException as e:
        err = e.args[0] if e.args else None
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise TopicError(f"cannot create topic {topic!r}: {e}") from e
    # Creation is acknowledged before every broker knows the topic; wait until it is visible.
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailableError(f"topic {topic!r} not visible after {timeout}s")
        try:
            md = admin.list_topics(topic=topic, timeout=min(remaining, 5.0))
        except KafkaException:
            time.sleep(0.1)
            continue
        t = md.topics.get(topic)
        if t is not None and t.error is None and t.partitions:
            leaders_ok = all(p.leader >= 0 for p in t.partitions.values())
            if leaders_ok:
                return
        time.sleep(0.1)
