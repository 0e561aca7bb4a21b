"""The Worker: builds a worker process's parts and owns their start and stop order.

The parts, one thread (or pool) each, sharing one lock around the pure `PartitionBook`:
* `Member` (coordinator) heartbeats and calls the `RebalanceHandler` when the member is
  assigned, revoked or fenced;
* the `Fetcher` (poll thread) owns the confluent-kafka Consumer and feeds the queue;
* the `Starter` claims tasks and records their starts; the `HandlerPool` runs them through
  the `TaskRunner`;
* the `Flusher` records completions in batches, then the runner marks their offsets done;
* the `OffsetCommitter` reads and commits positions on one group-coordinator connection;
* `Registration` keeps the worker's lease in the registry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis
from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry

from ringleader.coordinator.errors import ConfigError
from ringleader.coordinator.member import Member
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.settings import MemberSettings
from ringleader.worker import metrics as prom
from ringleader.worker.app import App
from ringleader.worker.batches import BatchGate
from ringleader.worker.book import PartitionBook
from ringleader.worker.committer import OffsetCommitter
from ringleader.worker.delayed import DelayedSet
from ringleader.worker.fetcher import BatchStates, Fetcher
from ringleader.worker.flow import fetch_consumer
from ringleader.worker.health import RedisProbe, preflight
from ringleader.worker.keeper import LedgerKeeper
from ringleader.worker.lanes import busiest, partitions_of
from ringleader.worker.ledger import TaskLedger, new_incarnation
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.pool import Flusher, HandlerPool, RecordWindow
from ringleader.worker.producers import TaskEvents, WorkerProducers
from ringleader.worker.queues import SchedulingQueue
from ringleader.worker.ready import Ready, ReadyQueue
from ringleader.worker.rebalance import RebalanceHandler
from ringleader.worker.registration import Registration, eviction_backend
from ringleader.worker.results import ResultStore, RunOf
from ringleader.worker.runner import TaskRunner
from ringleader.worker.settings import WorkerSettings, member_settings_from_env
from ringleader.worker.starter import Starter

__all__ = ["BatchStates", "Worker", "WorkerSettings", "member_settings_from_env"]

log = logging.getLogger("ringleader.worker")

VERSION = "0.1"
LOST_DRAIN = 0.5  # seconds a lost partition's running tasks get before it is let go


@dataclass(slots=True)
class _Parts:
    """What `start()` builds, in the order it starts them."""

    producers: WorkerProducers
    consumer: Consumer
    committer: OffsetCommitter
    runner: TaskRunner
    flusher: Flusher
    starter: Starter
    pool: HandlerPool[Ready]
    fetcher: Fetcher
    registration: Registration
    member: Member
    rebalance: RebalanceHandler
    ledger: TaskLedger
    keeper: LedgerKeeper


class Worker:
    """A worker process's runtime. `run()` blocks until `request_stop()`/`stop()`;
    `start()`/`stop()` run it in the background (tests, embedding)."""

    def __init__(
        self,
        app: App,
        worker_id: str | None = None,
        concurrency: int | None = None,
        member_settings: MemberSettings | None = None,
        settings: WorkerSettings | None = None,
        *,
        batch_gate: BatchStates | None = None,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
        metrics: prom.MetricsSettings | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics or prom.MetricsSettings.from_env(environ)
        self.registry = CollectorRegistry()  # this worker's metrics (served with metrics.port)
        # Counted only when served: a worker without a metrics port pays nothing per task.
        self._task_metrics = (
            None
            if self.metrics.port is None
            else prom.TaskMetrics(self.registry, lambda n: app.registry.get(n) is not None)
        )
        self._metrics_server: prom.MetricsServer | None = None
        s = app.settings
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency if concurrency is not None else s.concurrency
        if isinstance(self.concurrency, bool) or self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency!r}")
        self.settings = settings or WorkerSettings.from_env(environ)
        self.member_settings = member_settings or member_settings_from_env(
            s.namespace, self.worker_id, environ
        )
        self.topics = app.topics
        self.record_window = max(self.settings.record_window, self.concurrency)
        # This process, as the task ledger knows it (a restart with the same id is another).
        self.incarnation = new_incarnation()
        self._clock = clock  # wall clock: task timestamps, retry and not-before times
        self._batch_gate = batch_gate
        self._own_gate = False
        self._lock = threading.Condition()
        self._book = PartitionBook()
        self._queue = SchedulingQueue()
        self._window = RecordWindow(self.record_window)
        self._stop_requested = threading.Event()
        self._started = False
        self._stopped = False
        self._parts: _Parts | None = None
        self._probe: RedisProbe | None = None
        self.fatal: str | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("Worker already started")
        self._started = True
        # Never join a group whose partitions this worker could not serve (exit 3 instead).
        preflight(self.app.settings, self.settings.preflight_timeout)
        ensure_topics(self.app.settings)
        parts = self._parts = self._build()
        readings = prom.worker_readings(
            book=self._book, lock=self._lock, queue=self._queue, member=parts.member,
            watermarks=lambda: parts.fetcher.watermarks, app=self.app,
        )  # fmt: skip
        self.registry.register(prom.WorkerCollector(readings))
        if self.metrics.port is not None:
            self._metrics_server = prom.MetricsServer(self.metrics, self.registry)
        parts.keeper.start()
        parts.flusher.start()
        parts.pool.start()
        parts.starter.start()
        parts.fetcher.start()
        parts.registration.start()
        parts.member.start()
        # Redis lost for longer than the grace: leave the group until it answers again.
        self._probe = RedisProbe(self.app.settings.redis, parts.member, self.settings.redis_grace)
        self._probe.start()
        log.info(
            "worker %s started: namespace %s, %d handler threads, record window %d",
            self.worker_id,
            self.app.settings.namespace,
            self.concurrency,
            self.record_window,
        )

    def _build(self) -> _Parts:
        s = self.app.settings
        rk = s.librdkafka_config()
        producers = WorkerProducers(
            rk,
            dead_letter_topic=self.topics.dead_letter,
            events_topic=self.topics.events,
            events=self.settings.events,
        )
        client: redis.Redis[bytes] = redis.Redis.from_url(
            s.redis, socket_timeout=10.0, socket_connect_timeout=5.0
        )
        # Same prefix as ResultStore.from_url, so clients find what workers record.
        prefix = f"ringleader:{s.namespace}"
        store = ResultStore(client, prefix)
        ledger = TaskLedger(
            client,
            prefix,
            worker_id=self.worker_id,
            incarnation=self.incarnation,
            crash_limit=self.settings.crash_limit,
            ttl=s.result_ttl,
        )
        consumer = fetch_consumer(rk)
        member = Member(
            s.bootstrap,
            self.member_settings,
            topic=self.topics.tasks,
            partitions=s.partitions,
            assignment_topic=self.topics.assignments,
            metadata=MemberMetadata(
                worker_id=self.worker_id, capacity=self.concurrency, version=VERSION
            ),
            on_assigned=self._on_assigned,
            on_revoked=self._on_revoked,
            on_fenced=self._on_fenced,
            on_lost=self._on_lost,
            busy=self._busy,
            security=s.security,
        )
        committer = OffsetCommitter(
            s.bootstrap,
            self.member_settings,
            self.topics.tasks,
            book=self._book,
            lock=self._lock,
            holder=member,
            settle=producers.settle,
            security=s.security,
        )
        # Half the window begun ahead at most: the other half holds runs being recorded.
        ahead = max(self.concurrency, self.record_window // 2)
        ready = ReadyQueue(self.concurrency, self._clock, most=ahead)
        runner = TaskRunner(
            self.app,
            self.worker_id,
            book=self._book,
            lock=self._lock,
            ledger=ledger,
            queue=self._queue,
            ready=ready,
            window=self._window,
            producers=producers,
            events=TaskEvents(producers, self.worker_id, self._task_metrics),
            tasks_topic=self.topics.tasks,
            clock=self._clock,
        )
        flusher = runner.flusher = Flusher(
            store,
            s.result_ttl,
            runner.after_record,
            self._window,
            started_after=self.settings.started_status_after,
            run=RunOf(ledger.start_field, ledger.running_key),
        )
        keeper = LedgerKeeper(
            ledger,
            DelayedSet(client, prefix),
            producers,
            topic=self.topics.tasks,
            partitions=s.partitions,
            is_leader=lambda: member.is_leader,
            # A dead process's starts count as crashes once this lapses: within the session
            # timeout, by when its partitions have moved on.
            alive_ttl=self.member_settings.session_timeout,
            evict=eviction_backend(client, self.settings.registry_prefix).evict,
        )
        fetcher = Fetcher(
            consumer, self.topics.tasks, book=self._book, lock=self._lock, queue_=self._queue,
            store=store, producers=producers, committer=committer, runner=runner,
            gate=self._gate, generation=lambda: member.generation, settings=self.settings,
            request_timeout=self.member_settings.request_timeout,
            max_payload=s.max_payload_bytes, clock=self._clock, on_crash=self._fail,
            metrics=self._task_metrics,
        )  # fmt: skip
        registration = Registration(
            s.redis,
            s.namespace,
            self.worker_id,
            capacity=self.concurrency,
            version=VERSION,
            prefix=self.settings.registry_prefix,
            lease_duration=self.settings.lease_duration,
        )
        rebalance = RebalanceHandler(
            book=self._book,
            lock=self._lock,
            queue=self._queue,
            post=fetcher.post,
            committer=committer,
            announcer=registration,
            drain_timeout=self.settings.drain_timeout,
            on_fatal=self._fail,
        )
        starter = Starter(
            runner, flusher, book=self._book, lock=self._lock, lease=member, ledger=ledger,
            queue=self._queue, ready=ready, window=self._window, clock=self._clock,
        )  # fmt: skip
        pool = HandlerPool(ready, self.concurrency, runner.run, clock=self._clock)
        return _Parts(producers, consumer, committer, runner, flusher, starter, pool, fetcher,
                      registration, member, rebalance, ledger, keeper)  # fmt: skip

    def run(self) -> None:
        """Start and block until `request_stop()` (e.g. from a SIGTERM handler), then stop."""
        if not self._started:
            self.start()
        # Waiting in slices keeps the main thread responsive to signal handlers.
        while not self._stop_requested.wait(0.5):
            pass
        self.stop()

    def request_stop(self) -> None:
        """Ask `run()` to stop; safe from a signal handler."""
        self._stop_requested.set()

    def wait_assigned(self, timeout: float) -> bool:
        return self._parts is not None and self._parts.member.wait_assigned(timeout)

    @property
    def member(self) -> Member | None:
        return None if self._parts is None else self._parts.member

    @property
    def partitions(self) -> list[int]:
        with self._lock:
            return partitions_of(self._book.active())

    @property
    def executed(self) -> int:
        return 0 if self._parts is None else self._parts.runner.executed

    @property
    def skipped_completed(self) -> int:
        return 0 if self._parts is None else self._parts.fetcher.skipped_completed

    def stop(self, timeout: float = 60.0) -> None:
        """Revoke everything (running tasks finish, offsets are committed), leave the group,
        stop every thread. No task of this worker runs again elsewhere after a clean stop."""
        if self._stopped or self._parts is None:
            self._stopped = True
            return
        self._stopped = True
        self._stop_requested.set()
        parts = self._parts
        deadline = time.monotonic() + timeout

        def left(cap: float = timeout) -> float:
            return max(1.0, min(cap, deadline - time.monotonic()))

        # close() revokes first (our revoke handler drains and commits), then LeaveGroup.
        if self._probe is not None:
            self._probe.stop()  # first: it must not resume the member while it closes
        parts.member.close(left())
        parts.fetcher.stop(left())
        self._queue.close()
        parts.starter.stop(left(5.0))
        parts.flusher.close(left(10.0))
        parts.pool.join(max(0.1, min(5.0, deadline - time.monotonic())))
        parts.keeper.stop(left(5.0))
        parts.ledger.retire()  # logs, never raises: a stop must finish
        parts.producers.close(left(10.0))
        parts.consumer.close()
        parts.committer.close()
        parts.registration.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        self.app.close()
        if self._own_gate and self._batch_gate is not None:
            self._batch_gate.close()
        log.info("worker %s stopped", self.worker_id)

    # ---- wiring ------------------------------------------------------------------------

    def _on_assigned(self, generation: int, partitions: list[int]) -> None:
        assert self._parts is not None
        self._parts.rebalance.assigned(generation, partitions, self._parts.member.member_id)

    def _on_revoked(self, partitions: list[int]) -> None:
        assert self._parts is not None
        self._parts.rebalance.revoked(partitions)

    def _on_lost(self, partitions: list[int]) -> None:
        # The session is gone or going: others may own these within the fence margin, so
        # stop starting their tasks and commit now; running tasks finish on their own (the
        # ledger makes a new owner wait for them).
        assert self._parts is not None
        self._parts.rebalance.revoked(partitions, drain_timeout=LOST_DRAIN)

    def _on_fenced(self, reason: str, fatal: bool) -> None:
        assert self._parts is not None
        self._parts.rebalance.fenced(reason, fatal)

    def _busy(self) -> dict[int, int]:
        with self._lock:
            return busiest(self._book.busy(self._clock()))

    def _fail(self, reason: str) -> None:
        self.fatal = reason
        self._stop_requested.set()

    def _gate(self) -> BatchStates:
        if self._batch_gate is None:
            gate = BatchGate(self.app.settings, abandon_after=self.settings.batch_ttl)
            gate.start(0.1)
            self._batch_gate = gate
            self._own_gate = True
        return self._batch_gate
