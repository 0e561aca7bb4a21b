"""Delayed tasks and cancellation with worker processes on Apache Kafka and Tansu.

A task submitted with a countdown waits in Redis (never on the topic, never in a worker's
memory) and starts after its time, also when every worker that was up at submission has died,
the group leader included; a cancelled task never starts, a running one stops at its next
checkpoint, and a finished one says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ringleader.client import Client, TaskSpec
from ringleader.status import gather
from ringleader.worker.cancel import CancelOutcome
from ringleader.worker.delayed import DelayedSet
from ringleader.worker.errors import TaskCancelled
from ringleader.worker.results import Status
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def settings(broker: str, redis_url: str, unique_name: str) -> AppSettings:
    return procs.namespace(broker, redis_url, unique_name, 4)


@pytest.fixture
def workers(settings: AppSettings, tmp_path: Path) -> Iterator[procs.Workers]:
    with procs.workers_of(settings, tmp_path) as ws:
        yield ws


@pytest.fixture
def client(settings: AppSettings) -> Iterator[Client]:
    with Client(settings=settings) as c:
        yield c


def starts(settings: AppSettings) -> dict[str, float]:
    """Each task's first start (wall clock), from the counting app's log."""
    out: dict[str, float] = {}
    for line in procs.run_log(settings.redis, settings.namespace):
        tid, _pid, _attempt, at = line.split()
        out.setdefault(tid, float(at))
    return out


def delayed_count(client: Client) -> int:
    return len(DelayedSet(client.results.client, client.results.prefix))


def test_delayed_tasks_wait_in_redis_and_start_after_their_time(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    workers.start("w0", concurrency=4)
    assert client.submit("count", kwargs={"n": -1}).result(timeout=90) == -1
    now = time.time()
    specs = [TaskSpec("count", kwargs={"n": i}, not_before=now + 1 + (i % 4)) for i in range(40)]
    handles = client.submit_many(specs)
    at_once = client.submit("count", kwargs={"n": 99}, countdown=0)
    eta = client.submit("count", kwargs={"n": 7}, eta=datetime.now(UTC) + timedelta(seconds=2))
    assert at_once.result(timeout=30) == 99  # a zero countdown is not held back
    assert handles[0].status() is Status.SCHEDULED
    assert delayed_count(client) >= 40  # in Redis, not on the topic
    assert [h.result(timeout=60) for h in handles] == list(range(40))
    assert eta.result(timeout=30) == 7
    began = starts(settings)
    for h, spec in zip(handles, specs, strict=True):
        assert spec.not_before is not None
        assert began[h.id] >= spec.not_before, "a task started before its time"
        assert began[h.id] - spec.not_before < 5.0  # 0.5 s mover tick, on a busy machine
    assert delayed_count(client) == 0
    execs = procs.executions(settings.redis, settings.namespace)
    assert all(execs[h.id] == 1 for h in handles)


def test_delayed_tasks_survive_every_worker_dying_the_leader_too(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    first = [workers.start(f"a{i}", concurrency=2) for i in range(2)]
    assert client.submit("count", kwargs={"n": -1}).result(timeout=90) == -1
    report = gather(settings)
    assert report.leader is not None
    handles = [client.submit("count", kwargs={"n": i}, countdown=6) for i in range(10)]
    for wp in first:
        wp.kill()  # every worker up at submission, the leader among them
    workers.start("b0", concurrency=2)
    assert [h.result(timeout=120) for h in handles] == list(range(10))
    execs = procs.executions(settings.redis, settings.namespace)
    assert all(execs[h.id] == 1 for h in handles)


def test_cancel_queued_delayed_running_and_finished(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    # Queued on the broker while no worker runs, and delayed: cancelled, never started,
    # also by workers that start afterwards.
    queued = client.submit("count", kwargs={"n": 1})
    delayed = client.submit("count", kwargs={"n": 2}, countdown=3)
    assert queued.cancel() is CancelOutcome.CANCELLED
    assert client.cancel(delayed.id) is CancelOutcome.CANCELLED
    assert delayed_count(client) == 0
    for h in (queued, delayed):
        assert h.status() is Status.CANCELLED
        with pytest.raises(TaskCancelled):
            h.result(timeout=5)
    workers.start("w0", concurrency=2)
    # Running: it sees ctx.cancelled and stops at its next checkpoint.
    running = client.submit("cancellable", kwargs={"seconds": 60})
    procs.wait_started(settings, running.id)
    assert running.cancel() is CancelOutcome.REQUESTED
    # (a `started` status the worker flushes late may overwrite `cancel_requested`)
    assert running.status() in (Status.CANCEL_REQUESTED, Status.STARTED, Status.CANCELLED)
    with pytest.raises(TaskCancelled, match="while running"):
        running.result(timeout=30)
    assert running.status() is Status.CANCELLED
    # Finished: says so, and the result stays.
    done = client.submit("count", kwargs={"n": 3})
    assert done.result(timeout=60) == 3
    assert done.cancel() is CancelOutcome.FINISHED
    assert done.result(timeout=1) == 3
    # The cancelled ones never ran, even after a worker (re)started and drained the topic.
    workers.start("w1", concurrency=2)
    assert client.submit("count", kwargs={"n": 4}).result(timeout=60) == 4
    execs = procs.executions(settings.redis, settings.namespace)
    assert queued.id not in execs and delayed.id not in execs
    assert execs[running.id] == 1


def test_a_cancel_requested_while_running_stops_its_retries(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    """A running task that never checks its context fails after the cancel: its retry is
    recorded cancelled, not run (the begin script reads the cancel flag)."""
    workers.start("w0", concurrency=2)
    h = client.submit("fails_late", kwargs={"seconds": 2})
    procs.wait_started(settings, h.id)
    assert h.cancel() is CancelOutcome.REQUESTED
    with pytest.raises(TaskCancelled, match="earlier run"):
        h.result(timeout=60)
    assert h.status() is Status.CANCELLED
    assert procs.executions(settings.redis, settings.namespace)[h.id] == 1


def test_two_copies_of_a_task_in_one_worker_never_run_side_by_side(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    """The same envelope on the topic twice (a producer's retry, a move repeated): the worker
    runs it once; the second copy waits for the first's record, then skips it."""
    workers.start("w0", concurrency=4)
    assert client.submit("count", kwargs={"n": 0}).result(timeout=90) == 0
    [env] = procs.envelopes("long", 1, seconds=2.0)
    procs.submit_envelopes(settings.bootstrap, client.topics.tasks, [env, env])
    assert client.result(env.id, timeout=60) == 2.0
    log = workers.procs[0].log_text

    def runs() -> int:
        return procs.executions(settings.redis, settings.namespace)[env.id]

    procs.wait_until(
        lambda: f"task {env.id} already completed; skipped" in log() or runs() > 1,
        30,
        "the second copy to be skipped (or run)",
    )
    assert runs() == 1
    assert f"task {env.id} runs in this process already" in log()
