"""The worker's metrics without a worker: events in, samples out (pure)."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ringleader.errors import ConfigError
from ringleader.registry.breakers import BreakerState, BreakerStatus
from ringleader.worker.envelope import Envelope, EventKind, new_task_id
from ringleader.worker.lanes import LANE_STRIDE
from ringleader.worker.metrics import (
    MetricsSettings,
    Readings,
    TaskMetrics,
    WorkerCollector,
    lag_of,
)
from ringleader.worker.queues import QueueCounts


def samples(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_events_count_by_task_and_time_the_run_and_the_wait() -> None:
    reg = CollectorRegistry()
    m = TaskMetrics(reg, known=lambda n: n == "build")
    env = Envelope(id=new_task_id(), name="build", submitted_at=100.0)
    m.event(env, EventKind.STARTED, 102.5)
    m.event(env, EventKind.FAILED, 104.0)
    m.event(env, EventKind.RETRYING, 104.0)
    m.fetched(["build", "typo", None], completed=["build"])
    m.skip("build", "stale")
    got = samples(reg)
    assert got[("ringleader_tasks_started_total", (("task", "build"),))] == 1
    assert got[("ringleader_tasks_failed_total", (("task", "build"),))] == 1
    assert got[("ringleader_tasks_retried_total", (("task", "build"),))] == 1
    assert got[("ringleader_task_run_seconds_sum", (("task", "build"),))] == 1.5
    assert got[("ringleader_task_queue_wait_seconds_sum", (("task", "build"),))] == 2.5
    # Names the app does not know share one label: no unbounded label values.
    for task in ("build", "unknown", "undecodable"):
        assert got[("ringleader_tasks_received_total", (("task", task),))] == 1
    assert got[("ringleader_tasks_skipped_total", (("reason", "completed"), ("task", "build")))]
    assert got[("ringleader_tasks_skipped_total", (("reason", "stale"), ("task", "build")))]


def test_histogram_buckets_are_cumulative_and_a_bound_counts_in_its_bucket() -> None:
    reg = CollectorRegistry()
    m = TaskMetrics(reg, known=lambda n: True)
    for i, run in enumerate([0.005, 0.006, 0.5, 7200.0, 99999.0]):  # on a bound, above, ...
        env = Envelope(id=f"t{i}", name="build", submitted_at=0.0)
        m.event(env, EventKind.STARTED, 0.0)  # from 0: the run time is `run` exactly
        m.event(env, EventKind.SUCCEEDED, run)
    got = samples(reg)

    def bucket(le: str) -> float:
        return got[("ringleader_task_run_seconds_bucket", (("le", le), ("task", "build")))]

    assert bucket("0.005") == 1 and bucket("0.025") == 2 and bucket("0.5") == 3
    assert bucket("14400.0") == 4 and bucket("+Inf") == 5
    assert got[("ringleader_task_run_seconds_count", (("task", "build"),))] == 5
    assert got[("ringleader_task_run_seconds_sum", (("task", "build"),))] == pytest.approx(
        0.005 + 0.006 + 0.5 + 7200.0 + 99999.0
    )


def test_threads_counting_while_scraped_lose_nothing() -> None:
    """Each thread adds to a tally of its own; a scrape in the middle sees a consistent
    partial count and the last one sees every increment."""
    reg = CollectorRegistry()
    m = TaskMetrics(reg, known=lambda n: True)
    threads, per_thread = 8, 5000
    go = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        go.wait()
        for i in range(per_thread):
            env = Envelope(id=f"{t}-{i}", name="build", submitted_at=1.0)
            m.fetched(["build"], ())
            m.event(env, EventKind.STARTED, 2.0)
            m.event(env, EventKind.SUCCEEDED, 3.0)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    go.wait()
    seen = []
    while any(th.is_alive() for th in pool):
        seen.append(samples(reg).get(("ringleader_tasks_started_total", (("task", "build"),))))
    for th in pool:
        th.join()
    got = samples(reg)
    total = threads * per_thread
    for name in ("received", "started", "succeeded"):
        assert got[(f"ringleader_tasks_{name}_total", (("task", "build"),))] == total
    assert got[("ringleader_task_run_seconds_count", (("task", "build"),))] == total
    counts = [s for s in seen if s is not None]
    assert counts == sorted(counts) and all(c <= total for c in counts)  # never goes back


def test_the_collector_reads_the_worker_at_scrape_time() -> None:
    reg = CollectorRegistry()
    owned = [0, 2]
    reg.register(
        WorkerCollector(
            Readings(
                in_flight=lambda: 3,
                queues=lambda: QueueCounts(5, 1, 2),
                partitions=lambda: owned,
                generation=lambda: 7,
                leader=lambda: True,
                rebalances=lambda: (4, 0.25),
                lag=lambda: {0: 10, 2: 0},
                breakers=lambda: [BreakerStatus("billing", "", BreakerState.OPEN, 3, None)],
                instances=lambda: 6,
            )
        )
    )
    got = samples(reg)
    assert got[("ringleader_tasks_in_flight", ())] == 3
    assert got[("ringleader_queue_depth", (("queue", "unschedulable"),))] == 2
    assert got[("ringleader_partitions_owned", ())] == 2
    assert got[("ringleader_generation", ())] == 7 and got[("ringleader_leader", ())] == 1
    assert got[("ringleader_rebalances_total", ())] == 4
    assert got[("ringleader_last_rebalance_seconds", ())] == 0.25
    assert got[("ringleader_consumer_lag", (("partition", "0"),))] == 10
    assert got[("ringleader_breaker_state", (("instance", ""), ("service", "billing")))] == 2
    assert got[("ringleader_registry_instances", ())] == 6
    owned.pop()
    assert samples(reg)[("ringleader_partitions_owned", ())] == 1


def test_lag_sums_a_partitions_lanes_and_counts_from_the_log_start_when_nothing_committed() -> None:
    marks = {0: (0, 100), LANE_STRIDE: (0, 7), 1: (40, 50)}
    assert lag_of({0: 90, LANE_STRIDE: 7, 1: None, 3: 5}, marks.get) == {0: 10, 1: 10}


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_a_bad_metrics_port_is_a_config_error(port: str) -> None:
    with pytest.raises(ConfigError) as e:
        MetricsSettings.from_env({"RINGLEADER_METRICS_PORT": port})
    assert e.value.setting == "RINGLEADER_METRICS_PORT"


def test_metrics_are_off_unless_a_port_is_given() -> None:
    assert MetricsSettings.from_env({}).port is None
    s = MetricsSettings.from_env(
        {"RINGLEADER_METRICS_PORT": "9464", "RINGLEADER_METRICS_HOST": "::1"}
    )
    assert (s.port, s.host) == (9464, "::1")
