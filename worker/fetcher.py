"""The fetch loop (the worker's poll thread): it alone touches the confluent-kafka Consumer.

It applies assignment changes posted by the rebalance handler (typed messages, in order),
fetches in batches, decodes, skips tasks already completed (one Redis round trip per batch),
feeds the scheduling queue, pauses fetching while too many tasks are held or while a higher
priority level has tasks waiting (`lanes.FetchGate`), releases parked batch tasks once their
batch is decided, and commits offsets every `commit_interval`.

An assigned partition is fetched on every priority level's topic: the book, the queue and the
committer see lanes (`worker.lanes`), which for the default level are the partition numbers.

The consumer never joins a Kafka consumer group (`assign()` only): the group of record is the
ringleader group of the member, which also holds the committed offsets.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import redis
from confluent_kafka import Consumer, KafkaException, TopicPartition

from ringleader.worker import envelope as envelope_mod
from ringleader.worker.batches import BatchState
from ringleader.worker.book import PartitionBook, RawRecord
from ringleader.worker.committer import IO_ERRORS, OffsetCommitter
from ringleader.worker.envelope import Envelope
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge
from ringleader.worker.flow import LaneFlow
from ringleader.worker.lanes import LANE_STRIDE, LaneTopics, Level, lanes_of, level_of
from ringleader.worker.producers import WorkerProducers
from ringleader.worker.queues import SchedulingQueue
from ringleader.worker.results import ResultStore
from ringleader.worker.runner import TaskRunner
from ringleader.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from ringleader.worker.metrics import TaskMetrics

log = logging.getLogger("ringleader.worker")


@dataclass(frozen=True, slots=True)
class AssignPartitions:
    """Start fetching these partitions of `generation` from their committed positions."""

    generation: int
    partitions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UnassignPartitions:
    """Stop fetching these lanes (the rebalance handler is revoking their partitions)."""

    partitions: tuple[int, ...]


Control = AssignPartitions | UnassignPartitions


class BatchStates(Protocol):
    """What the worker asks about 2PC batches (`worker.batches.BatchGate` is the default)."""

    def state(self, batch_id: str, now: float | None = None) -> BatchState: ...

    def member(self, batch_id: str, task_id: str) -> bool:
        """Whether the committed batch names this task."""
        ...

    def reason(self, batch_id: str) -> str | None: ...

    def close(self) -> None: ...


class Fetcher:
    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        *,
        book: PartitionBook,
        lock: threading.Condition,
        queue_: SchedulingQueue,
        store: ResultStore,
        producers: WorkerProducers,
        committer: OffsetCommitter,
        runner: TaskRunner,
        gate: Callable[[], BatchStates],
        generation: Callable[[], int],
        settings: WorkerSettings,
        request_timeout: float,
        max_payload: int,
        clock: Callable[[], float],
        on_crash: Callable[[str], None],
        metrics: TaskMetrics | None = None,
    ) -> None:
        self._consumer = consumer
        self._lanes = LaneTopics(topic)
        self._levels = self._lanes.levels()
        self._flow = LaneFlow(consumer, self._lanes, settings.max_outstanding)
        self._book = book
        self._lock = lock
        self._queue = queue_
        self._store = store
        self._producers = producers
        self._committer = committer
        self._runner = runner
        self._gate = gate
        self._generation = generation
        self._settings = settings
        self._request_timeout = request_timeout
        self._max_payload = max_payload
        self._clock = clock
        self._control: queue.SimpleQueue[Control] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ringleader-poll", daemon=True)
        self._on_crash = on_crash
        self._metrics = metrics
        self.skipped_completed = 0
        self.watermarks: dict[int, tuple[int, int]] = {}  # lane -> (low, high) as last fetched

    def post(self, msg: Control) -> None:
        """Queue an assignment change (any thread); applied in order by the poll thread."""
        self._control.put(msg)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)

    # ---- the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("poll loop crashed; stopping the worker")
            self._on_crash("poll loop crashed")

    def _loop(self) -> None:
        every = _Timers(self._settings.commit_interval)
        self._flow.warm(self._request_timeout)  # while the member joins the group
        while not self._stop.is_set():
            self._apply_control()
            self._producers.poll()
            now = time.monotonic()
            if every.commit_due(now):
                self._committer.commit_due()
                self._note_watermarks()
            if every.report_due(now):
                self._report()
            if self._book_parked() and every.batches_due(now):
                self._check_batches()
            with self._lock:
                active = self._book.active()
            if not active:
                self._wait_for_control()
                continue
            self._flow_control(active)
            msgs = self._fetch()
            if msgs:
                self._ingest(msgs)

    def _note_watermarks(self) -> None:
        """The log ends of the held lanes as last fetched, for the lag metric: read on this
        thread, since the consumer answers other threads only between its polls."""
        with self._lock:
            lanes = self._book.active()
        marks: dict[int, tuple[int, int]] = {}
        for ln in lanes:
            tp = TopicPartition(self._lanes.topic(level_of(ln)), ln % LANE_STRIDE)
            try:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                marks[ln] = (int(low), int(high))
        self.watermarks = marks

    def _fetch(self) -> list[Any]:
        try:
            # consume() waits for a full batch or its timeout; poll() returns the first
            # record at once, then whatever is already fetched is drained without waiting.
            first = self._consumer.poll(0.1)
            msgs = [] if first is None else [first]
            if first is not None and self._settings.fetch_batch > 1:
                msgs.extend(
                    self._consumer.consume(num_messages=self._settings.fetch_batch - 1, timeout=0)
                )
            return msgs
        except KafkaException as e:
            log.warning("consume failed: %s", e)
            time.sleep(0.1)
            return []

    def _book_parked(self) -> bool:
        with self._lock:
            return self._book.parked_count > 0

    # ---- assignment changes -----------------------------------------------------------

    def _wait_for_control(self) -> None:
        try:
            msg = self._control.get(timeout=0.1)
        except queue.Empty:
            return
        self._apply(msg)

    def _apply_control(self) -> None:
        while True:
            try:
                msg = self._control.get_nowait()
            except queue.Empty:
                return
            self._apply(msg)

    def _apply(self, msg: Control) -> None:
        if isinstance(msg, AssignPartitions):
            self._assign(msg)
            return
        self._flow.unassign(msg.partitions)

    def _assign(self, msg: AssignPartitions) -> None:
        committed = self._read_positions(msg)
        if committed is None:
            return
        with self._lock:
            started = self._book.assign(committed)
        self._flow.assign(started)
        default = {ln: pos for ln, pos in started.items() if level_of(ln) is Level.NORMAL}
        log.info(
            "generation %d: consuming %s from %s (and their priority levels)",
            msg.generation,
            list(msg.partitions),
            default,
        )

    def _read_positions(self, msg: AssignPartitions) -> dict[int, int | None] | None:
        """The committed positions of an assignment, retried until read; None when the
        generation was superseded first (or the worker is stopping)."""
        while not self._stop.is_set():
            if self._generation() != msg.generation:
                log.info("generation %d superseded before its offsets were read", msg.generation)
                return None
            try:
                return self._committer.read(lanes_of(msg.partitions), self._request_timeout)
            except IO_ERRORS as e:
                log.warning("reading committed offsets failed: %s; retrying", e)
                time.sleep(0.2)
        return None

    def _flow_control(self, active: list[int]) -> None:
        with self._lock:
            parked = self._book.parked_count
        self._flow.control(active, len(self._queue) + parked)

    # ---- records ----------------------------------------------------------------------

    def _decode(self, msgs: list[Any]) -> list[RawRecord]:
        out: list[RawRecord] = []
        levels = self._levels
        seen = self._flow.next
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.debug("consumer: %s", err)
                continue
            raw = m.value() or b""
            env: Envelope | None = None
            reason = None
            try:
                env = envelope_mod.decode(raw, max_size=self._max_payload)
            except PayloadTooLarge as e:
                reason = f"oversized payload: {e.reason}"
            except EnvelopeError as e:
                reason = f"undecodable envelope: {e.reason}"
            lane_ = levels[m.topic()] * LANE_STRIDE + m.partition()
            offset = m.offset()
            seen[lane_] = offset + 1
            out.append(RawRecord(lane_, offset, raw, env, reason))
        return out

    def _ingest(self, msgs: list[Any]) -> None:
        decoded = self._decode(msgs)
        ids = [r.envelope.id for r in decoded if r.envelope is not None]
        flags = iter(self._completed(ids))
        records = [
            r if r.envelope is None else dataclasses.replace(r, completed=next(flags))
            for r in decoded
        ]
        if self._metrics is not None:
            self._metrics.fetched(
                (None if r.envelope is None else r.envelope.name for r in records),
                (r.envelope.name for r in records if r.envelope is not None and r.completed),
            )
        now = self._clock()
        with self._lock:
            sorted_ = self._book.ingest(records)
        self.skipped_completed += sorted_.skipped
        for task in sorted_.ready:
            self._queue.push(task, now)
        for rec in sorted_.undecodable:
            self._runner.dead_letter_raw(rec)

    def _completed(self, ids: list[str]) -> list[bool]:
        backoff = 0.1
        while True:
            try:
                return self._store.completed_many(ids)
            except redis.RedisError as e:
                if self._stop.is_set():
                    return [False] * len(ids)
                log.warning("checking completions failed (%s); retrying", e)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    # ---- batches ----------------------------------------------------------------------

    def _check_batches(self) -> None:
        """Queue the parked tasks of committed batches; dead-letter abandoned ones."""
        gate = self._gate()
        with self._lock:
            batch_ids = self._book.parked_batches()
        for bid in batch_ids:
            try:
                state = gate.state(bid)
            except Exception as e:  # noqa: BLE001 - a gate failure must not stop the loop
                log.warning("batch gate failed for %s: %s", bid, e)
                continue
            if state is BatchState.PENDING:
                continue
            with self._lock:
                tasks = self._book.take_batch(bid)
            if state is BatchState.COMMITTED:
                now = self._clock()
                for task in tasks:
                    if gate.member(bid, task.envelope.id):
                        self._queue.push(task, now)
                    else:
                        self._runner.dead_letter(task, f"not part of committed batch {bid}")
                continue
            why = gate.reason(bid)
            reason = f"batch abandoned: {why}" if why else "batch abandoned"
            for task in tasks:
                self._runner.dead_letter(task, reason)

    def _report(self) -> None:
        with self._lock:
            parts = self._book.positions()
            parked = self._book.parked_count
        log.info(
            "executed %d, skipped %d, queued %d, parked %d; partition committed/committable/"
            "outstanding/inflight: %s",
            self._runner.executed,
            self.skipped_completed,
            len(self._queue),
            parked,
            parts,
        )


class _Timers:
    """When the loop's periodic jobs are next due (monotonic seconds)."""

    def __init__(self, commit_interval: float) -> None:
        now = time.monotonic()
        self._interval = commit_interval
        self._commit = now + commit_interval
        self._report = now + 5.0
        self._batches = 0.0

    def commit_due(self, now: float) -> bool:
        if now < self._commit:
            return False
        self._commit = now + self._interval
        return True

    def report_due(self, now: float) -> bool:
        if now < self._report:
            return False
        self._report = now + 5.0
        return True

    def batches_due(self, now: float) -> bool:
        if now < self._batches:
            return False
        self._batches = now + 0.1
        return True
