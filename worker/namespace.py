"""Create a namespace's topics: the task topic with its partitions, and the one-partition logs."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from ringleader.coordinator.topics import ensure_topic
from ringleader.errors import ConfigError
from ringleader.worker.routing import topics
from ringleader.worker.settings import AppSettings


def replication_for(settings: AppSettings, timeout: float = 10.0) -> int:
    """Three replicas where the cluster has three brokers or more, else one per broker."""
    config: dict[str, str | int | float | bool] = {**settings.librdkafka_config()}
    admin = AdminClient(config)
    brokers = len(admin.list_topics(timeout=timeout).brokers)
    return max(1, min(3, brokers))


def ensure_topics(settings: AppSettings, timeout: float = 30.0) -> None:
    """Idempotent: existing topics are left as they are."""
    t = topics(settings.namespace)
    rf = replication_for(settings)
    sec = settings.security
    # One task topic per priority level, co-partitioned (see worker.lanes).
    for name in t.lanes.all():
        ensure_topic(
            settings.bootstrap, name, settings.partitions, rf, timeout=timeout, security=sec
        )
    _check_co_partitioned(settings, t.lanes.all(), timeout)
    # The logs are read whole, in order: one partition each.
    for name in (t.assignments, t.batches, t.dead_letter, t.events):
        ensure_topic(settings.bootstrap, name, 1, rf, timeout=timeout, security=sec)


def _check_co_partitioned(settings: AppSettings, names: tuple[str, ...], timeout: float) -> None:
    """The level topics must have the main task topic's partition count: a worker that owns
    partition p fetches p of each (a topic made by hand with other counts is refused)."""
    admin = AdminClient({**settings.librdkafka_config()})
    md = admin.list_topics(timeout=min(timeout, 10.0))
    counts = {n: len(md.topics[n].partitions) for n in names if n in md.topics}
    if len(set(counts.values())) > 1:
        raise ConfigError(
            f"the task topics of namespace {settings.namespace!r} must have the same partition "
            f"count (one topic per priority level): {counts}"
        )
