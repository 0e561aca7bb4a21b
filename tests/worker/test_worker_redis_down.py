"""Redis goes away under a running worker process (on Apache Kafka and Tansu) and comes back.

The test starts its own redis-server (append-only, fsync always, so a restart keeps what was
written) and kills it while tasks flow. The worker must keep running; while Redis is down it
starts at most its record window of tasks (none can be recorded); once Redis is back every
task completes, each was started once and recorded once, and nothing is lost.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringleader.client import Client, TaskSpec
from ringleader.worker.envelope import EventKind, decode_event
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings
from tests.registry.registry_testkit import OwnRedis, start_own_redis
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 4
CONCURRENCY = 4
WINDOW = 16


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = start_own_redis(tmp_path / "redis", persist=True)
    try:
        yield server
    finally:
        server.kill()


def test_redis_outage_stalls_at_most_the_window_and_loses_nothing(
    broker: str, own_redis: OwnRedis, unique_name: str, tmp_path: Path
) -> None:
    ns = unique_name
    settings = AppSettings(
        namespace=ns, bootstrap=broker, redis=own_redis.url, partitions=PARTITIONS
    )
    ensure_topics(settings)
    env = procs.worker_env(ns, broker, own_redis.url, partitions=PARTITIONS)
    env["RINGLEADER_WORKER_RECORD_WINDOW"] = str(WINDOW)
    workers = procs.Workers(env, tmp_path)
    ids: list[str] = []
    stop = threading.Event()
    try:
        w = workers.start("w1", CONCURRENCY)
        with Client(settings=settings) as client:
            # Tasks keep arriving before, during and after the outage (submitting needs only
            # the broker).
            def submit() -> None:
                while not stop.is_set():
                    ids.extend(h.id for h in client.submit_many([TaskSpec("noop")] * 50))
                    time.sleep(0.05)

            submitter = threading.Thread(target=submit, daemon=True)
            submitter.start()
            procs.wait_until(
                lambda: len(ids) > 200 and procs.count_completed(own_redis.url, ns, ids) > 100,
                120,
                "the worker to complete tasks",
            )
            own_redis.kill()
            down_at = time.time()  # after the kill returned: nothing is recorded from here
            time.sleep(3.0)  # the outage itself: a duration, not a wait for a condition
            up_at = time.time()
            own_redis.start()
            time.sleep(1.0)  # more tasks after the outage
            stop.set()
            submitter.join(30)
        procs.wait_until(
            lambda: procs.count_completed(own_redis.url, ns, ids) == len(ids),
            120,
            f"all {len(ids)} tasks to complete after Redis came back",
            interval=0.5,
        )
        assert w.alive(), "the worker died during the Redis outage"
        log = w.log_text()
        assert "failed" in log and "retrying" in log, "the outage was never noticed"
    finally:
        stop.set()
        workers.close()
        print(workers.dump_logs())

    events = [decode_event(v) for v in procs.read_all(broker, f"{ns}.events")]
    started = collections.Counter(e.task_id for e in events if e.kind is EventKind.STARTED)
    succeeded = collections.Counter(e.task_id for e in events if e.kind is EventKind.SUCCEEDED)
    assert set(succeeded) == set(ids) and max(succeeded.values()) == 1
    assert set(started) == set(ids) and max(started.values()) == 1, "a task ran twice"
    # Nothing could be recorded while Redis was down: at most the window of tasks started.
    during = [e for e in events if e.kind is EventKind.STARTED and down_at < e.at < up_at]
    assert len(during) <= WINDOW, f"{len(during)} tasks started during the outage"
