"""Priority levels with a worker process, on Apache Kafka and Tansu.

A task submitted with a higher priority goes to its level's topic (worker.lanes) and starts
before lower-priority tasks already queued on the broker, not only before those the worker
has fetched; a low one waits until the normal backlog is fetched. The worker holds few tasks
in memory here (max_outstanding 40, fetched 10 at a time) so the backlog really is on the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ringleader.client import Client, TaskSpec
from ringleader.coordinator.topics import ensure_topic
from ringleader.errors import ConfigError
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

BACKLOG = 600  # normal tasks of 20 ms on 2 handler threads: about 6 s of work


@pytest.fixture
def settings(broker: str, redis_url: str, unique_name: str) -> AppSettings:
    return procs.namespace(broker, redis_url, unique_name, 2)


@pytest.fixture
def client(settings: AppSettings) -> Iterator[Client]:
    with Client(settings=settings) as c:
        yield c


def start_order(settings: AppSettings) -> list[str]:
    """Task ids in the order their first run started (the counting app's log)."""
    seen: dict[str, None] = {}
    for line in procs.run_log(settings.redis, settings.namespace):
        seen.setdefault(line.split()[0], None)
    return list(seen)


def test_high_tasks_overtake_the_queued_backlog_and_low_ones_wait_for_it(
    settings: AppSettings, client: Client, tmp_path: Path, broker_kind: str
) -> None:
    extra = {"RINGLEADER_WORKER_MAX_OUTSTANDING": "40", "RINGLEADER_WORKER_FETCH_BATCH": "10"}
    with procs.workers_of(settings, tmp_path, extra=extra) as workers:
        workers.start("w0", concurrency=2)
        assert client.submit("count", kwargs={"n": -1}).result(timeout=90) == -1
        normal = client.submit_many(
            [TaskSpec("count", kwargs={"n": i, "sleep": 0.02}) for i in range(BACKLOG)]
        )
        procs.wait_until(
            lambda: len(start_order(settings)) > 60, 60, "the backlog to start running"
        )
        low = client.submit_many(
            [TaskSpec("count", kwargs={"n": 2000 + i}, priority=-1) for i in range(3)]
        )
        high = client.submit_many(
            [TaskSpec("count", kwargs={"n": 1000 + i}, priority=1) for i in range(3)]
        )
        # A delayed one waits in Redis; the leader's keeper puts it on the high level's topic.
        high.append(client.submit("count", kwargs={"n": 1003}, priority=1, countdown=1))
        assert [h.result(timeout=60) for h in high] == [1000, 1001, 1002, 1003]
        assert [h.result(timeout=120) for h in normal] == list(range(BACKLOG))
        assert [h.result(timeout=60) for h in low] == [2000, 2001, 2002]
    order = start_order(settings)
    normal_ids = {h.id for h in normal}
    for h in high:
        before = sum(1 for t in order[: order.index(h.id)] if t in normal_ids)
        # Started with most of the backlog still queued: it did not wait its turn (in FIFO
        # order all 600 would have run first).
        assert before < BACKLOG * 2 // 3, f"a high task started after {before} normal ones"
    last_normal = max(order.index(h.id) for h in normal)
    first_low = min(order.index(h.id) for h in low)
    if broker_kind == "kafka":
        # The low level is paused while the normal one has lag (Kafka's watermarks): it
        # starts after the whole normal backlog.
        assert first_low > last_normal
    else:
        # Tansu's watermarks are not Kafka's (README); the low tasks still run, and after
        # most of the backlog that was queued before them.
        assert first_low > BACKLOG // 3
    assert procs.executions(settings.redis, settings.namespace).get(high[0].id) == 1


def test_level_topics_with_another_partition_count_are_refused(
    broker: str, redis_url: str, unique_name: str
) -> None:
    s = AppSettings(namespace=unique_name, bootstrap=broker, redis=redis_url, partitions=3)
    ensure_topic(broker, s.namespace + ".tasks.high", partitions=2)  # made by hand, wrongly
    with pytest.raises(ConfigError, match=r"same partition count.*\.tasks\.high': 2"):
        ensure_topics(s)
