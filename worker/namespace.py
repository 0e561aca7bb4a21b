"""Create a namespace's topics: the task topic with its partitions, and the one-partition logs."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from ringleader.coordinator.topics import ensure_topic
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
    ensure_topic(
        settings.bootstrap, t.tasks, settings.partitions, rf, timeout=timeout, security=sec
    )
    # The logs are read whole, in order: one partition each.
    for name in (t.assignments, t.batches, t.dead_letter, t.events):
        ensure_topic(settings.bootstrap, name, 1, rf, timeout=timeout, security=sec)
