"""Create a namespace's topics: the task topic with its partitions, and the one-partition logs."""

from __future__ import annotations

from confluent_kafka.admin import (  # type: ignore[attr-defined, unused-ignore]
    AdminClient,
    ClusterMetadata,
    TopicMetadata,
)

from ringleader.coordinator.topics import ensure_topic
from ringleader.errors import ConfigError
from ringleader.worker.routing import topics
from ringleader.worker.settings import AppSettings


def ensure_topics(settings: AppSettings, timeout: float = 30.0) -> None:
    """Idempotent: existing topics are left as they are."""
    t = topics(settings.namespace)
    logs = (t.assignments, t.batches, t.dead_letter, t.events)
    admin = AdminClient({**settings.librdkafka_config()})
    md = admin.list_topics(timeout=min(timeout, 10.0))
    if all(_usable(md.topics.get(name)) for name in (*t.lanes.all(), *logs)):
        # The usual start, in a namespace that exists: one metadata read, no client per topic.
        _check_co_partitioned(settings, t.lanes.all(), md)
        return
    rf = max(1, min(3, len(md.brokers)))  # three replicas once the cluster has three brokers
    sec = settings.security
    # One task topic per priority level, co-partitioned (see worker.lanes).
    for name in t.lanes.all():
        ensure_topic(
            settings.bootstrap, name, settings.partitions, rf, timeout=timeout, security=sec
        )
    _check_co_partitioned(settings, t.lanes.all(), admin.list_topics(timeout=min(timeout, 10.0)))
    # The logs are read whole, in order: one partition each.
    for name in logs:
        ensure_topic(settings.bootstrap, name, 1, rf, timeout=timeout, security=sec)


def _usable(topic: TopicMetadata | None) -> bool:
    """Created, and every partition has a leader (what `ensure_topic` waits for)."""
    if topic is None or topic.error is not None or not topic.partitions:
        return False
    return all(p.leader >= 0 for p in topic.partitions.values())


def _check_co_partitioned(
    settings: AppSettings, names: tuple[str, ...], md: ClusterMetadata
) -> None:
    """The level topics must have the main task topic's partition count: a worker that owns
    partition p fetches p of each (a topic made by hand with other counts is refused)."""
    counts = {n: len(md.topics[n].partitions) for n in names if n in md.topics}
    if len(set(counts.values())) > 1:
        raise ConfigError(
            f"the task topics of namespace {settings.namespace!r} must have the same partition "
            f"count (one topic per priority level): {counts}"
        )
