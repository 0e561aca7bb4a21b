"""Tasks that kill their worker, and attempts that outlive workers, on Apache Kafka and Tansu.

The per-task run records (`worker.ledger`) decide: a task whose runs died with their worker
`RINGLEADER_CRASH_LIMIT` times is dead-lettered by the next worker, the fleet survives; the
attempt count survives SIGKILLs; a waiting retry holds back no offset commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ringleader.client import Client, TaskSpec
from ringleader.coordinator.wire import GroupClient
from ringleader.worker.envelope import decode_dead_letter
from ringleader.worker.errors import TaskError
from ringleader.worker.results import ResultStore, Status
from ringleader.worker.routing import topics
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 3


@pytest.fixture
def settings(broker: str, redis_url: str, unique_name: str) -> AppSettings:
    return procs.namespace(broker, redis_url, unique_name, PARTITIONS)


@pytest.fixture
def workers(settings: AppSettings, tmp_path: Path) -> Iterator[procs.Workers]:
    with procs.workers_of(settings, tmp_path) as ws:
        yield ws


@pytest.fixture
def client(settings: AppSettings) -> Iterator[Client]:
    c = Client(settings=settings)
    try:
        yield c
    finally:
        c.close()


def dead_letters(settings: AppSettings) -> list[object]:
    return [
        decode_dead_letter(v)
        for v in procs.read_all(settings.bootstrap, topics(settings.namespace).dead_letter)
    ]


def test_a_task_that_kills_its_worker_is_quarantined_and_the_fleet_survives(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    for i in range(3):
        workers.start(f"w{i}", concurrency=2)
    assert client.submit("count", kwargs={"n": -1}).result(timeout=90) == -1  # group is up
    specs = [TaskSpec("count", kwargs={"n": i}) for i in range(500)]
    handles = client.submit_many(specs[:250])
    poison = client.submit("die")
    handles += client.submit_many(specs[250:])
    assert [h.result(timeout=180) for h in handles] == list(range(500))
    with pytest.raises(TaskError, match="crashed its worker 2 times"):
        poison.result(timeout=120)
    assert poison.status() is Status.DEAD_LETTERED
    dead = [workers_proc for workers_proc in workers.procs if not workers_proc.alive()]
    assert len(dead) == 2, f"{len(dead)} workers died; the crash limit is 2"
    (rec,) = [r for r in dead_letters(settings) if getattr(r, "task_id", None) == poison.id]
    assert rec.reason.startswith("crashed its worker 2 times")  # type: ignore[attr-defined]
    for wp in dead:
        assert wp.worker_id in rec.reason  # type: ignore[attr-defined]
    assert procs.executions(settings.redis, settings.namespace)[poison.id] == 2
    # The survivor warned when it fetched a task with one prior crash, and is still serving.
    assert client.submit("count", kwargs={"n": 7}).result(timeout=60) == 7


# Kafka only: what this checks lives in Redis and the worker, not in the broker's group
# coordination (the Tansu twin added ~30 s to CI; chaos rows cover Tansu's failover).
@pytest.mark.parametrize("broker", ["kafka"], indirect=True)
def test_retries_are_counted_across_workers_that_are_killed_between_attempts(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    workers.start("w0")
    handle = client.submit("always_fails")
    ns = settings.namespace
    r = redis.Redis.from_url(settings.redis)
    delayed = ResultStore(r, f"ringleader:{ns}").delayed_key
    for attempt in (1, 2):

        def parked(a: int = attempt) -> bool:
            """Attempt `a` ran, failed, and its retry is parked (due after it started)."""
            starts = [
                float(line.split()[3])
                for line in procs.run_log(settings.redis, ns)
                if line.split()[0] == handle.id and line.split()[2] == str(a)
            ]
            score = r.zscore(delayed, handle.id)
            return bool(starts) and score is not None and score > starts[0]

        procs.wait_until(parked, 90, f"attempt {attempt} failed and parked")
        # The worker that ran it dies during the backoff; a fresh one takes over.
        (victim,) = [wp for wp in workers.procs if wp.alive()]
        workers.start(f"w{attempt}")
        victim.kill()
        victim.wait(10)
    with pytest.raises(TaskError, match="attempt 3 fails"):
        handle.result(timeout=120)
    assert procs.executions(settings.redis, ns)[handle.id] == 3
    attempts = [
        line.split()[2]
        for line in procs.run_log(settings.redis, ns)
        if line.split()[0] == handle.id
    ]
    assert attempts == ["1", "2", "3"]


# Kafka only: what this checks lives in Redis and the worker, not in the broker's group
# coordination (the Tansu twin added ~30 s to CI; chaos rows cover Tansu's failover).
@pytest.mark.parametrize("broker", ["kafka"], indirect=True)
def test_a_waiting_retry_does_not_hold_back_its_partitions_commit(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    workers.start("w0")
    slow = client.submit("fails_once_slowly", key="same-partition")
    procs.wait_until(
        lambda: procs.executions(settings.redis, settings.namespace).get(slow.id, 0) >= 1,
        90,
        "the first attempt",
    )
    later = client.submit_many(
        [TaskSpec("count", kwargs={"n": i}, key="same-partition") for i in range(20)]
    )
    assert [h.result(timeout=60) for h in later] == list(range(20))
    partition = later[-1].partition
    assert partition is not None and partition == slow.partition
    # Everything on the partition so far: the first attempt's record and the 20 after it.
    end = procs.end_offset(settings.bootstrap, topics(settings.namespace).tasks, partition)
    group = GroupClient(settings.bootstrap, f"{settings.namespace}.workers")
    try:
        group.find_coordinator(10)

        def committed() -> int:
            fetched = group.fetch_offsets(
                topic=topics(settings.namespace).tasks, partitions=[partition], timeout=10
            )
            return fetched[partition].offset

        procs.wait_until(lambda: committed() >= end, 20, "the commit past the waiting retry")
    finally:
        group.close()
    assert slow.status() is Status.RETRYING
    assert slow.result(timeout=90) == 2  # it still runs after its backoff, once
    assert procs.executions(settings.redis, settings.namespace)[slow.id] == 2
