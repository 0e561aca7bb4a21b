"""A worker paused (SIGSTOP) past its session timeout, then resumed (SIGCONT), on Apache Kafka.

While it is stopped the group moves its partitions and the survivor runs its task again (the
paused run's start counts as a crash). When it resumes, the paused run must not go on working
beside the new one: its next `ctx.checkpoint()` sees that this worker's lease has lapsed and
stops it, with nothing recorded. The task completes once, from the survivor's run.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import redis

from ringleader.client import Client
from ringleader.worker.results import ResultStore
from tests.worker import procs
from tests.worker.apps.counting import steps_key

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

HOLDS = re.compile(r"generation \d+ applied: partitions \[\d")


def test_a_resumed_worker_stops_its_paused_run_at_the_next_checkpoint(
    kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    settings = procs.namespace(kafka_bootstrap, redis_url, unique_name, partitions=2)
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)

    def step_lines() -> list[tuple[str, int, int, float]]:
        raw = r.lrange(steps_key(settings.namespace), 0, -1)
        return [(t, int(p), int(i), float(at)) for t, p, i, at in (x.decode().split() for x in raw)]

    with procs.workers_of(settings, tmp_path) as ws:
        w1 = ws.start("w1")
        with Client(settings=settings) as client:
            h = client.submit("steps", kwargs={"n": 40, "seconds": 0.25})
        procs.wait_started(settings, h.id)
        w2 = ws.start("w2")
        # w2 has joined once it announces a partition of its own (the idle one moves first).
        procs.wait_until(
            lambda: HOLDS.search(w2.log_text()) is not None, 60, "w2 to hold a partition"
        )

        w1.proc.send_signal(signal.SIGSTOP)
        try:
            procs.wait_until(
                lambda: any(p == w2.proc.pid for _, p, _, _ in step_lines()),
                60,
                "w2 to run the paused worker's task",
            )
        finally:
            w1.proc.send_signal(signal.SIGCONT)
        resumed_at = time.time()

        store = ResultStore.from_url(redis_url, settings.namespace)
        procs.wait_until(lambda: store.is_completed(h.id), 60, "the task to complete")
        assert store.wait_result(h.id, 5).value() == 40
        procs.wait_until(
            lambda: "stopped at a checkpoint" in w1.log_text(),
            30,
            "the resumed worker to stop its paused run",
        )
        late = [s for s in step_lines() if s[1] == w1.proc.pid and s[3] > resumed_at]
        assert late == [], f"the resumed run went on working beside the new one: {late}"
        survivor = [s for s in step_lines() if s[1] == w2.proc.pid]
        assert [s[2] for s in survivor] == list(range(40)), "the survivor ran every step once"
        assert procs.executions(redis_url, settings.namespace)[h.id] == 2
