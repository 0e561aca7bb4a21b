"""A real worker's `/metrics` on Apache Kafka and Redis, scraped during a dispatch of 1,000
tasks (some failing once and retried, some failing until dead-lettered) and parsed with
prometheus_client's own text parser: the counters say what happened. A second worker
joining moves the generation and the rebalance counter; the lag falls to 0."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ringleader.client import Client, TaskSpec
from ringleader.local.procs import free_port
from ringleader.worker.errors import TaskError
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 4
COUNTS, FLAKY, DOOMED = 900, 80, 20


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Sample name and labels -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def per_task(m: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["task"]: v for (n, labels), v in m.items() if n == name}


def value(m: Samples, name: str) -> float:
    return m[(name, ())]


def test_metrics_count_a_dispatch_and_follow_a_rebalance(
    kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    settings = procs.namespace(kafka_bootstrap, redis_url, unique_name, partitions=PARTITIONS)
    p1, p2 = free_port(), free_port()
    with procs.workers_of(settings, tmp_path) as ws, Client(settings=settings) as client:
        ws.start("w1", concurrency=4, extra_env={"RINGLEADER_METRICS_PORT": str(p1)})
        assert client.submit("count", kwargs={"n": -1}).result(timeout=120) == -1  # up
        specs: list[TaskSpec] = [TaskSpec("count", kwargs={"n": i}) for i in range(COUNTS)]
        specs += [TaskSpec("flaky", kwargs={"fail_times": 1}) for _ in range(FLAKY)]
        specs += [TaskSpec("always_fails") for _ in range(DOOMED)]
        handles = client.submit_many(specs)
        for h in handles[: COUNTS + FLAKY]:
            h.result(timeout=180)
        for h in handles[COUNTS + FLAKY :]:
            with pytest.raises(TaskError):
                h.result(timeout=180)

        m = scrape(p1)
        runs = {"count": COUNTS + 1, "flaky": 2 * FLAKY, "always_fails": 3 * DOOMED}
        assert per_task(m, "ringleader_tasks_received_total") == runs  # retries come back
        assert per_task(m, "ringleader_tasks_started_total") == runs
        assert _nonzero(per_task(m, "ringleader_tasks_succeeded_total")) == {
            "count": COUNTS + 1, "flaky": FLAKY,
        }  # fmt: skip
        assert _nonzero(per_task(m, "ringleader_tasks_failed_total")) == {
            "flaky": FLAKY, "always_fails": 3 * DOOMED,
        }  # fmt: skip
        assert _nonzero(per_task(m, "ringleader_tasks_retried_total")) == {
            "flaky": FLAKY, "always_fails": 2 * DOOMED,
        }  # fmt: skip
        assert _nonzero(per_task(m, "ringleader_tasks_dead_lettered_total")) == {
            "always_fails": DOOMED
        }
        assert per_task(m, "ringleader_task_run_seconds_count")["count"] == COUNTS + 1
        assert value(m, "ringleader_partitions_owned") == PARTITIONS
        assert value(m, "ringleader_leader") == 1
        gen, rebalances = value(m, "ringleader_generation"), value(m, "ringleader_rebalances_total")
        assert gen >= 0 and rebalances >= 1
        assert value(m, "ringleader_tasks_in_flight") == 0
        procs.wait_until(lambda: _lag(scrape(p1)) == 0, 30, "the lag to fall to 0")

        ws.start("w2", concurrency=4, extra_env={"RINGLEADER_METRICS_PORT": str(p2)})

        def moved() -> bool:
            m = scrape(p1)
            return (
                value(m, "ringleader_partitions_owned") < PARTITIONS
                and value(m, "ringleader_generation") > gen
                and value(m, "ringleader_rebalances_total") > rebalances
            )

        procs.wait_until(moved, 120, "w1's metrics to show the rebalance w2's join made")
        # Cooperative: w1 lets go in one generation, w2 takes them in the next.
        procs.wait_until(
            lambda: value(scrape(p2), "ringleader_partitions_owned") > 0, 60, "w2 to own some"
        )


def _nonzero(d: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in d.items() if v}


def _lag(m: Samples) -> float:
    return sum(v for (n, _), v in m.items() if n == "ringleader_consumer_lag")
