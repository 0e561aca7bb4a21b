"""Worker processes end to end on Apache Kafka and Tansu with real Redis: every task completes
and its completion is recorded once; a SIGKILLed worker causes at most its in-flight count of
duplicate executions (its record window: tasks run without their completion recorded); a
SIGTERMed worker causes none."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringleader.client import Client, TaskSpec
from ringleader.worker.envelope import EventKind, decode_event
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 6
CONCURRENCY = 4
RECORD_WINDOW = 6  # above the concurrency, so finished-but-unrecorded tasks count too


@pytest.fixture
def workers(
    broker: str, redis_url: str, unique_name: str, tmp_path: Path
) -> Iterator[procs.Workers]:
    settings = AppSettings(
        namespace=unique_name, bootstrap=broker, redis=redis_url, partitions=PARTITIONS
    )
    ensure_topics(settings)
    ws = procs.Workers(
        procs.worker_env(unique_name, broker, redis_url, partitions=PARTITIONS), tmp_path
    )
    try:
        yield ws
    finally:
        ws.close()
        print(ws.dump_logs())


def submit(broker: str, redis_url: str, ns: str, specs: list[TaskSpec]) -> list[str]:
    with Client(ns, broker, redis_url) as client:
        return [h.id for h in client.submit_many(specs)]


def succeeded_events(
    broker: str, ns: str, expected: int, timeout: float
) -> collections.Counter[str]:
    """Task id -> number of `succeeded` events (one per completion actually recorded)."""
    counts: collections.Counter[str] = collections.Counter()
    seen = [0]

    def enough(values: list[bytes]) -> bool:
        for v in values[seen[0] :]:
            ev = decode_event(v)
            if ev.kind is EventKind.SUCCEEDED:
                counts[ev.task_id] += 1
        seen[0] = len(values)
        return sum(counts.values()) >= expected

    procs.read_topic(broker, f"{ns}.events", enough, timeout)
    return counts


def test_three_workers_ten_thousand_tasks_complete_once(
    workers: procs.Workers, broker: str, redis_url: str, unique_name: str
) -> None:
    ns = unique_name
    for i in range(3):
        workers.start(f"w{i}", concurrency=4)
    # Submitted while the workers are still joining: rebalances happen mid-stream.
    ids = submit(broker, redis_url, ns, [TaskSpec("count", kwargs={"n": i}) for i in range(10_000)])
    procs.wait_until(
        lambda: procs.count_completed(redis_url, ns, ids) == len(ids),
        240,
        "10,000 completions",
        interval=0.5,
    )
    execs = procs.executions(redis_url, ns)
    assert set(execs) == set(ids)
    dups = {k: v for k, v in execs.items() if v != 1}
    assert not dups, f"{len(dups)} tasks ran more than once (graceful rebalances only)"
    succeeded = succeeded_events(broker, ns, len(ids), 60)
    assert set(succeeded) == set(ids)
    assert max(succeeded.values()) == 1, "a completion was recorded twice"
    assert all(wp.alive() for wp in workers.procs)


def _kill_mid_run(
    workers: procs.Workers,
    broker: str,
    redis_url: str,
    ns: str,
    *,
    hard: bool,
) -> tuple[dict[str, int], procs.WorkerProc, list[str]]:
    window = {"RINGLEADER_WORKER_RECORD_WINDOW": str(RECORD_WINDOW)}
    victims = [workers.start(f"w{i}", CONCURRENCY, window) for i in range(3)]
    ids = submit(broker, redis_url, ns, [TaskSpec("count", kwargs={"sleep": 0.02})] * 2400)
    procs.wait_until(
        lambda: procs.count_completed(redis_url, ns, ids) >= 500, 120, "500 completions"
    )
    victim = victims[1]
    (victim.kill if hard else victim.terminate)()
    rc = victim.wait(60)
    if not hard:
        assert rc == 0, f"SIGTERMed worker exited with {rc}"
    done_at_kill = procs.count_completed(redis_url, ns, ids)
    assert done_at_kill < len(ids), "the run finished before the worker was stopped"
    procs.wait_until(
        lambda: procs.count_completed(redis_url, ns, ids) == len(ids),
        180,
        "every task to complete after the worker stopped",
        interval=0.5,
    )
    execs = procs.executions(redis_url, ns)
    assert set(execs) == set(ids)
    return execs, victim, ids


def test_sigkill_mid_run_duplicates_bounded_by_in_flight(
    workers: procs.Workers, broker: str, redis_url: str, unique_name: str
) -> None:
    execs, victim, ids = _kill_mid_run(workers, broker, redis_url, unique_name, hard=True)
    dups = {k: v for k, v in execs.items() if v > 1}
    assert sum(v - 1 for v in dups.values()) <= RECORD_WINDOW, f"beyond in-flight: {dups}"
    # Every repeated task had been started by the killed worker.
    victim_runs = set(_runs_by_pid(redis_url, unique_name, victim.proc.pid))
    assert set(dups) <= victim_runs
    # Events are lingered: the killed worker's last ones may be lost, but none is doubled.
    succeeded = collections.Counter(
        ev.task_id
        for ev in map(decode_event, procs.read_all(broker, f"{unique_name}.events"))
        if ev.kind is EventKind.SUCCEEDED
    )
    assert max(succeeded.values()) == 1, "a completion was recorded twice"
    assert len(succeeded) >= len(ids) - 200


def test_sigterm_mid_run_no_duplicate_execution(
    workers: procs.Workers, broker: str, redis_url: str, unique_name: str
) -> None:
    execs, _, _ = _kill_mid_run(workers, broker, redis_url, unique_name, hard=False)
    dups = {k: v for k, v in execs.items() if v > 1}
    assert not dups, f"SIGTERM caused duplicate executions: {dups}"


def _runs_by_pid(redis_url: str, ns: str, pid: int) -> list[str]:
    import redis

    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    out = []
    for line in r.lrange(f"{ns}:log", 0, -1):
        task_id, run_pid, *_ = line.decode().split()
        if int(run_pid) == pid:
            out.append(task_id)
    return out
