"""Starts recorded ahead of the handler threads (`worker.starter`), on Apache Kafka and Redis.

While runs are short, the starter records the starts of the next tasks before a handler is
free for them. A stop gives back the ones no handler took: their starts are removed, so they
are not charged a crash, and the next owner runs them as ordinary tasks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from ringleader.worker.routing import topics
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]


def begun(r: redis.Redis[bytes], ns: str, task_id: str) -> bool:
    """Whether the task's run record holds a start (`s:<incarnation>`)."""
    return any(f.startswith(b"s:") for f in r.hkeys(f"ringleader:{ns}:{{{task_id}}}:run"))


# Kafka only: what this checks lives in the worker and Redis, not in the broker.
@pytest.mark.parametrize("broker", ["kafka"], indirect=True)
def test_short_tasks_are_begun_ahead_and_a_stop_gives_back_those_not_run(
    broker: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    settings = procs.namespace(broker, redis_url, unique_name, partitions=1)
    ns = settings.namespace
    quick = procs.envelopes("count", 40)  # short runs: the starter begins ahead
    held = procs.envelopes("long", 1, seconds=4.0)  # outlasts the 1 s drain at SIGTERM
    behind = procs.envelopes("count", 20)
    procs.submit_envelopes(broker, topics(ns).tasks, [*quick, *held, *behind])
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    with procs.workers_of(settings, tmp_path) as ws:
        w0 = ws.start("w0", concurrency=1, extra_env={"RINGLEADER_WORKER_DRAIN_TIMEOUT": "1"})
        procs.wait_started(settings, held[0].id, timeout=90)
        ahead = [e.id for e in behind if begun(r, ns, e.id)]
        # The one handler is busy with the long task: a begun task behind it was begun ahead.
        assert ahead, "no task behind the long one had its start recorded"
        assert not any(procs.executions(redis_url, ns).get(i) for i in ahead)
        w0.terminate()
        assert w0.wait(60) == 0
        assert [i for i in ahead if begun(r, ns, i)] == [], "a start given back at stop stayed"
        w1 = ws.start("w1", concurrency=2)
        ids = [e.id for e in behind]
        procs.wait_until(
            lambda: procs.count_completed(redis_url, ns, ids) == len(ids), 90, "the rest to run"
        )
        runs = procs.executions(redis_url, ns)
        assert all(runs.get(i) == 1 for i in ids), "a task behind the long one ran twice"
        # Only the long task (cut off by the stop) counts a crash and runs alone; none of those
        # begun ahead was charged for it.
        suspects = [line for line in w1.log_text().splitlines() if "crashed its worker" in line]
        assert all(held[0].id in line for line in suspects), suspects
