"""Tasks calling a real local HTTP downstream through `app.downstream`, in worker processes on
Apache Kafka and Tansu with real Redis: the downstream fails, its breaker opens (and shows in
`ringleader status`), tasks wait parked without spending their retry budget, the downstream
recovers, and every task completes with nothing dead-lettered for the outage."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from ringleader.chaos.stub import FlakyHTTP, serving
from ringleader.client import Client, TaskSpec
from ringleader.registry import Instance, RegistryBackend
from ringleader.status import gather
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.results import Status
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

DOWNSTREAM_APP = "tests.worker.apps.downstream:app"
TASKS = 20


@pytest.fixture
def echo() -> Iterator[FlakyHTTP]:
    with serving(failing=True) as srv:
        yield srv


def dead_letters(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        c.close()
    return int(hi - lo)


def test_open_breaker_parks_tasks_until_the_downstream_recovers(
    echo: FlakyHTTP, broker: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    ns = unique_name
    prefix = f"test:{ns}:registry"
    settings = AppSettings(namespace=ns, bootstrap=broker, redis=redis_url, partitions=4)
    ensure_topics(settings)
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    backend = RegistryBackend(r, prefix)
    backend.register(Instance("echo", "e1", echo.address), time.time())
    env = procs.worker_env(
        ns, broker, redis_url, partitions=4, extra={"RINGLEADER_TEST_REGISTRY_PREFIX": prefix}
    )
    workers = procs.Workers(env, tmp_path, app_ref=DOWNSTREAM_APP)
    try:
        workers.start("w1", concurrency=2)
        workers.start("w2", concurrency=2)
        with Client(settings=settings) as client:
            handles = client.submit_many([TaskSpec("fetch") for _ in range(TASKS)])

            def breaker_state() -> str | None:
                rows = gather(settings, registry_prefix=prefix).breakers
                return next((b["state"] for b in rows if b["instance"] == ""), None)

            procs.wait_until(lambda: breaker_state() == "open", 120, "the echo breaker to open")
            procs.wait_until(
                lambda: all(h.status() is Status.UNSCHEDULABLE for h in handles),
                120,
                "every task to be parked as unschedulable",
            )
            # Without breakers the outage would cost 2 task attempts x 2 calls per task.
            assert echo.failed_hits < 2 * 2 * TASKS / 2, echo.failed_hits
            assert all(wp.alive() for wp in workers.procs)

            echo.failing = False
            assert [h.result(timeout=120) for h in handles] == ["ok"] * TASKS
            procs.wait_until(lambda: breaker_state() == "closed", 30, "the breaker to close")
        assert dead_letters(broker, f"{ns}.dead-letter") == 0
    finally:
        workers.close()
        print(workers.dump_logs())
        backend.drop()
        r.close()
