"""Prometheus metrics of one worker process, served on `/metrics` with `--metrics-port`
(RINGLEADER_METRICS_PORT) on `--metrics-host` (RINGLEADER_METRICS_HOST, default 127.0.0.1).

Two halves, on one registry per worker (never prometheus_client's global one):
* `TaskMetrics`: counters and histograms fed as tasks arrive, start and end, from the same
  calls that write the task events, and from the fetcher and the runner's skips.
* `WorkerCollector`: what the worker holds, read when scraped (`Readings`): tasks in flight,
  the scheduling queues, partitions, generation, leadership, rebalances, consumer lag,
  breakers, registry instances.

Labels stay bounded: a task label is a name registered in the app (anything else counts as
"unknown", an undecodable record as "undecodable"), never a task id or an argument.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ringleader import env as envmod
from ringleader.coordinator.member import Member
from ringleader.errors import ConfigError
from ringleader.registry.breakers import BreakerState, BreakerStatus
from ringleader.worker.app import App
from ringleader.worker.book import PartitionBook
from ringleader.worker.lanes import partition_of
from ringleader.worker.queues import QueueCounts, SchedulingQueue
from ringleader.worker.task_metrics import TaskMetrics

__all__ = [
    "MetricsServer", "MetricsSettings", "Readings", "TaskMetrics", "WorkerCollector", "lag_of",
]  # fmt: skip

log = logging.getLogger("ringleader.worker.metrics")

BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(frozen=True, slots=True)
class Readings:
    """Where `WorkerCollector` reads the worker's state at scrape time."""

    in_flight: Callable[[], int]
    queues: Callable[[], QueueCounts]
    partitions: Callable[[], Sequence[int]]
    generation: Callable[[], int]
    leader: Callable[[], bool]
    rebalances: Callable[[], tuple[int, float | None]]
    lag: Callable[[], Mapping[int, int]]  # owned partition -> records not yet committed past
    breakers: Callable[[], Sequence[BreakerStatus]]
    instances: Callable[[], int | None]  # registry instances known; None: no registry in use


class WorkerCollector(Collector):
    def __init__(self, readings: Readings) -> None:
        self._r = readings

    def collect(self) -> Iterator[Metric]:
        r = self._r
        yield _gauge("ringleader_tasks_in_flight", "Task runs in progress", r.in_flight())
        q = r.queues()
        depth = GaugeMetricFamily(
            "ringleader_queue_depth", "Tasks held by the scheduling queues", labels=["queue"]
        )
        for name, n in (("active", q.active), ("backoff", q.backoff),
                        ("unschedulable", q.unschedulable)):  # fmt: skip
            depth.add_metric([name], n)
        yield depth
        yield _gauge("ringleader_partitions_owned", "Partitions this worker owns",
                     len(r.partitions()))  # fmt: skip
        yield _gauge("ringleader_generation", "Generation applied (-1: none)", r.generation())
        yield _gauge("ringleader_leader", "1 while this worker leads the group", int(r.leader()))
        count, last = r.rebalances()
        yield CounterMetricFamily(
            "ringleader_rebalances", "Rebalances ended (generations applied)", value=count
        )
        if last is not None:
            doc = "The last rebalance: leaving a generation to applying the next"
            yield _gauge("ringleader_last_rebalance_seconds", doc, last)
        lag = GaugeMetricFamily(
            "ringleader_consumer_lag", "Records of an owned partition not committed past",
            labels=["partition"],
        )  # fmt: skip
        for p, n in sorted(r.lag().items()):
            lag.add_metric([str(p)], n)
        yield lag
        breakers = GaugeMetricFamily(
            "ringleader_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open",
            labels=["service", "instance"],
        )  # fmt: skip
        for b in r.breakers():
            breakers.add_metric([b.service, b.instance], BREAKER_VALUE[b.state])
        yield breakers
        seen = r.instances()
        if seen is not None:
            yield _gauge("ringleader_registry_instances", "Registry instances known", seen)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Where `/metrics` is served; `port` None: not served (the default)."""

    port: int | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        p = self.port
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536):
            raise ConfigError(f"metrics port must be in 1..65535, got {p!r}", setting="port")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("metrics host must be a non-empty host name", setting="host")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> MetricsSettings:
        """RINGLEADER_METRICS_PORT and RINGLEADER_METRICS_HOST."""
        return envmod.from_env(cls, environ, prefix="RINGLEADER_METRICS_")


class MetricsServer:
    """`/metrics` of one registry on an HTTP server thread; `close()` stops it."""

    def __init__(self, settings: MetricsSettings, registry: CollectorRegistry) -> None:
        assert settings.port is not None
        try:
            self._server, self._thread = start_http_server(
                settings.port, addr=settings.host, registry=registry
            )
        except OSError as e:
            raise ConfigError(
                f"cannot serve metrics on {settings.host}:{settings.port}: {e}",
                setting="metrics_port",
            ) from e
        log.info("metrics on http://%s:%d/metrics", settings.host, settings.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def lag_of(
    positions: Mapping[int, int | None], watermark: Callable[[int], tuple[int, int] | None]
) -> dict[int, int]:
    """Per partition, records past its committed position up to the log end, summed over its
    priority lanes. `positions`: lane -> committed offset (None: nothing committed yet, so
    from the log start); `watermark(lane)`: (low, high) as last fetched, None if unknown."""
    out: dict[int, int] = {}
    for lane, committed in positions.items():
        marks = watermark(lane)
        if marks is None:
            continue
        low, high = marks
        start = low if committed is None else committed
        p = partition_of(lane)
        out[p] = out.get(p, 0) + max(0, high - start)
    return out


def worker_readings(
    *,
    book: PartitionBook,
    lock: threading.Condition,
    queue: SchedulingQueue,
    member: Member,
    watermarks: Callable[[], Mapping[int, tuple[int, int]]],
    app: App,
) -> Readings:
    """The readings of a running worker's parts (`Worker.start` registers them);
    `watermarks`: lane -> (low, high) as the fetcher last saw them."""

    def positions() -> dict[int, tuple[int | None, int | None, int, int]]:
        with lock:
            return book.positions()

    def breakers() -> Sequence[BreakerStatus]:
        ds = app.downstream_if_used
        return [] if ds is None else ds.breaker_states()

    def instances() -> int | None:
        ds = app.downstream_if_used
        known = getattr(ds.source, "instances", None) if ds is not None else None
        return None if known is None else len(known())  # the registry client's snapshot

    return Readings(
        in_flight=lambda: sum(p[3] for p in positions().values()),
        queues=queue.counts,
        partitions=lambda: member.assigned,
        generation=lambda: member.generation,
        leader=lambda: member.is_leader,
        rebalances=lambda: member.rebalances,
        lag=lambda: lag_of({lane: p[0] for lane, p in positions().items()}, watermarks().get),
        breakers=breakers,
        instances=instances,
    )
