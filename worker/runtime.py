"""The Worker: membership, a consumer on the assigned partitions, a handler pool, offsets.

Threads and what they own:
* the poll thread owns the confluent-kafka Consumer: it applies assignment changes (posted by
  the member thread), fetches in batches, decodes, skips tasks already completed (one Redis
  round trip per batch), feeds the scheduling queue, pauses fetching when too many tasks are
  held, and commits offsets periodically through `Member.commit_offsets` (fenced by
  generation);
* handler threads (`HandlerPool`) run tasks, each checking `Member.owns(partition)` first;
* the flusher records completions in batches and then marks their offsets done;
* the member thread heartbeats and calls `on_assigned`/`on_revoked`; `on_revoked` stops the
  partitions' tasks from starting, waits (bounded) for the running ones, commits, returns.

The consumer never joins a Kafka consumer group (`assign()` only): the group of record is the
ringleader group of the member, which also holds the committed offsets (OffsetFetch/Commit).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from ringleader.coordinator.errors import ConfigError, ErrorCode, FencedError, RingleaderError
from ringleader.coordinator.member import Member
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.settings import MemberSettings
from ringleader.coordinator.wire import GroupClient
from ringleader.worker import envelope as envelope_mod
from ringleader.worker.app import App
from ringleader.worker.batches import BatchGate
from ringleader.worker.envelope import (
    DeadLetterRecord,
    Envelope,
    EventKind,
    EventPacker,
)
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge
from ringleader.worker.execute import DeadLetter, Retry, Succeeded, Unschedulable, execute
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.offsets import OffsetTracker
from ringleader.worker.pool import Finished, Flusher, HandlerPool, RecordWindow
from ringleader.worker.producers import WorkerProducers
from ringleader.worker.queues import QueuedTask, SchedulingQueue
from ringleader.worker.registration import Registration
from ringleader.worker.results import CompletionWrite, ResultStore, Status
from ringleader.worker.settings import WorkerSettings, member_settings_from_env

log = logging.getLogger("ringleader.worker")

VERSION = "0.1"
_IO_ERRORS = (RingleaderError, KafkaException, OSError)


class BatchStates(Protocol):
    """What the worker asks about 2PC batches (`worker.batches.BatchGate` is the default)."""

    def state(self, batch_id: str, now: float | None = None) -> str:
        """ "committed", "pending" or "abandoned"."""
        ...

    def member(self, batch_id: str, task_id: str) -> bool:
        """Whether the committed batch names this task."""
        ...

    def reason(self, batch_id: str) -> str | None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class _Fetched(QueuedTask):
    """A queued task tagged with the assignment epoch of its partition."""

    epoch: int = 0


@dataclass(slots=True)
class _Partition:
    epoch: int
    tracker: OffsetTracker
    committed: int | None
    revoked: bool = False
    inflight: int = 0  # started by a handler, completion not yet recorded


@dataclass(slots=True)
class _Parked:
    tasks: list[_Fetched] = field(default_factory=list)


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
    ) -> None:
        self.app = app
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
        self._clock = clock
        self._batch_gate = batch_gate
        self._own_gate = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._parts: dict[int, _Partition] = {}
        self._epoch = 0
        self._held_generation = -1
        self._held_member_id = ""
        self._parked: dict[str, _Parked] = {}
        self._parked_count = 0
        self._control: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self._poll_stop = threading.Event()
        self._started = False
        self._stopped = False
        self._paused: set[int] = set()
        self._rngs = threading.local()
        self.fatal: str | None = None
        # Built in start().
        self._consumer: Consumer | None = None
        self._producers: WorkerProducers | None = None
        self._store: ResultStore | None = None
        self._queue = SchedulingQueue()
        self.record_window = max(self.settings.record_window, self.concurrency)
        self._window = RecordWindow(self.record_window)
        self._events = EventPacker(self.worker_id)
        self._flusher: Flusher | None = None
        self._pool: HandlerPool | None = None
        self._member: Member | None = None
        self._offsets_client: GroupClient | None = None
        self._offsets_lock = threading.Lock()
        self._registration: Registration | None = None
        self._poll_thread: threading.Thread | None = None
        # Counters (read by tests and the benchmark).
        self.executed = 0
        self.skipped_completed = 0

    # ---- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("Worker already started")
        self._started = True
        s = self.app.settings
        ensure_topics(s)
        rk = s.librdkafka_config()
        self._producers = WorkerProducers(
            rk,
            dead_letter_topic=self.topics.dead_letter,
            events_topic=self.topics.events,
            events=self.settings.events,
        )
        client: redis.Redis[bytes] = redis.Redis.from_url(
            s.redis, socket_timeout=10.0, socket_connect_timeout=5.0
        )
        # Same prefix as ResultStore.from_url, so clients find what workers record.
        self._store = ResultStore(client, f"ringleader:{s.namespace}")
        self._consumer = Consumer(
            {
                **rk,
                # librdkafka insists on a group id; with assign() it never joins or commits.
                "group.id": f"ringleader-worker-fetch-{os.urandom(6).hex()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
                "queued.max.messages.kbytes": 32768,
            }
        )
        self._offsets_client = GroupClient(
            s.bootstrap,
            self.member_settings.group_id,
            client_id=f"{self.member_settings.client_id}-offsets",
            connect_timeout=self.member_settings.connect_timeout,
        )
        self._flusher = Flusher(
            self._store,
            s.result_ttl,
            self._after_record,
            self._window,
            started_after=self.settings.started_status_after,
        )
        self._pool = HandlerPool(self._queue, self.concurrency, self._run_task, clock=self._clock)
        self._member = Member(
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
        )
        self._registration = Registration(
            s.redis,
            s.namespace,
            self.worker_id,
            capacity=self.concurrency,
            version=VERSION,
            prefix=self.settings.registry_prefix,
            lease_duration=self.settings.lease_duration,
        )
        self._flusher.start()
        self._pool.start()
        self._poll_thread = threading.Thread(
            target=self._poll_loop, name="ringleader-poll", daemon=True
        )
        self._poll_thread.start()
        self._registration.start()
        self._member.start()
        log.info(
            "worker %s started: namespace %s, %d handler threads, record window %d",
            self.worker_id,
            s.namespace,
            self.concurrency,
            self.record_window,
        )

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
        return self._member is not None and self._member.wait_assigned(timeout)

    @property
    def member(self) -> Member | None:
        return self._member

    @property
    def partitions(self) -> list[int]:
        with self._lock:
            return sorted(p for p, st in self._parts.items() if not st.revoked)

    def stop(self, timeout: float = 60.0) -> None:
        """Revoke everything (running tasks finish, offsets are committed), leave the group,
        stop every thread. No task of this worker runs again elsewhere after a clean stop."""
        if self._stopped or not self._started:
            self._stopped = True
            return
        self._stopped = True
        self._stop_requested.set()
        deadline = time.monotonic() + timeout
        assert self._member is not None
        # close() revokes first (our on_revoked drains and commits), then LeaveGroup.
        self._member.close(max(1.0, deadline - time.monotonic()))
        self._poll_stop.set()
        if self._poll_thread is not None:
            self._poll_thread.join(max(1.0, deadline - time.monotonic()))
        self._queue.close()
        if self._flusher is not None:
            self._flusher.close(max(1.0, min(10.0, deadline - time.monotonic())))
        if self._pool is not None:
            self._pool.join(max(0.1, min(5.0, deadline - time.monotonic())))
        if self._producers is not None:
            self._producers.close(max(1.0, min(10.0, deadline - time.monotonic())))
        if self._consumer is not None:
            self._consumer.close()
        if self._offsets_client is not None:
            self._offsets_client.close()
        if self._registration is not None:
            self._registration.close()
        self.app.close()
        if self._own_gate and self._batch_gate is not None:
            self._batch_gate.close()
        log.info("worker %s stopped", self.worker_id)

    # ---- member callbacks (member thread) ----------------------------------------------

    def _on_assigned(self, generation: int, partitions: list[int]) -> None:
        assert self._member is not None
        with self._lock:
            self._held_generation = generation
            self._held_member_id = self._member.member_id
        self._control.put(("assign", (generation, list(partitions))))
        if self._registration is not None:
            self._registration.update(partitions, generation)

    def _on_revoked(self, partitions: list[int]) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.settings.drain_timeout
        revoked = set(partitions)
        with self._lock:
            states = {p: st for p, st in self._parts.items() if p in revoked}
            for st in states.values():
                st.revoked = True
            generation, member_id = self._held_generation, self._held_member_id
            self._drop_parked(revoked)
        for p in states:
            self._queue.drain_partition(p)
        self._control.put(("unassign", list(states)))
        # Let running tasks of these partitions finish and their completions be recorded.
        with self._changed:
            finished = self._changed.wait_for(
                lambda: all(st.inflight == 0 for st in states.values()),
                max(0.0, deadline - time.monotonic()),
            )
        if not finished:
            left = {p: st.inflight for p, st in states.items() if st.inflight}
            log.warning(
                "revoke: abandoning running tasks %s after %.1fs", left, time.monotonic() - t0
            )
        self._commit_revoked(states, generation, member_id, deadline)
        with self._lock:
            for p, st in states.items():
                if self._parts.get(p) is st:
                    del self._parts[p]
        if self._registration is not None:
            self._registration.update(self.partitions, -1)
        log.info("revoked %s in %.3fs", sorted(states), time.monotonic() - t0)

    def _on_fenced(self, reason: str, fatal: bool) -> None:
        if fatal:
            self.fatal = reason
            log.error("fenced for good (%s); stopping", reason)
            self._stop_requested.set()

    def _commit_revoked(
        self, states: Mapping[int, _Partition], generation: int, member_id: str, deadline: float
    ) -> None:
        """Commit the revoked partitions' positions, still fenced by the old generation (the
        member no longer holds them, so `Member.commit_offsets` would refuse)."""
        with self._lock:
            offsets = {
                p: pos
                for p, st in states.items()
                if (pos := st.tracker.committable()) is not None and pos != st.committed
            }
        if not offsets or generation < 0 or not member_id:
            return
        assert self._producers is not None
        if not self._producers.settle(max(0.5, deadline - time.monotonic())):
            log.warning("revoke: dead letters unacknowledged; not committing %s", offsets)
            return
        try:
            codes = self._fetch_client_call(
                lambda c: c.commit_offsets(
                    generation=generation,
                    member_id=member_id,
                    group_instance_id=self.member_settings.group_instance_id,
                    topic=self.topics.tasks,
                    offsets=offsets,
                    timeout=max(1.0, min(5.0, deadline - time.monotonic())),
                ),
                max(1.0, deadline - time.monotonic()),
            )
        except _IO_ERRORS as e:
            log.warning("revoke: commit of %s failed: %s", offsets, e)
            return
        bad = {p: c.name for p, c in codes.items() if c != ErrorCode.NONE}
        if bad:
            log.warning("revoke: commit refused for %s", bad)
        else:
            log.info("revoke: committed %s (generation %d)", offsets, generation)

    def _fetch_client_call(self, fn: Callable[[GroupClient], Any], timeout: float) -> Any:
        """Run a request on the offsets client, finding the coordinator (again) as needed."""
        assert self._offsets_client is not None
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        with self._offsets_lock:
            client = self._offsets_client
            while time.monotonic() < deadline:
                try:
                    if client.coordinator is None:
                        client.find_coordinator(max(0.5, deadline - time.monotonic()))
                    return fn(client)
                except _IO_ERRORS as e:
                    last = e
                    client.coordinator = None
                    time.sleep(0.1)
        raise last if last is not None else TimeoutError("offsets request timed out")

    # ---- poll thread -------------------------------------------------------------------

    def _poll_loop(self) -> None:
        next_commit = time.monotonic() + self.settings.commit_interval
        next_batches = 0.0
        next_report = time.monotonic() + 5.0
        try:
            while not self._poll_stop.is_set():
                self._apply_control()
                assert self._producers is not None and self._consumer is not None
                self._producers.poll()
                now = time.monotonic()
                if now >= next_commit:
                    self._commit_periodic()
                    next_commit = time.monotonic() + self.settings.commit_interval
                if now >= next_report:
                    self._report()
                    next_report = now + 5.0
                if self._parked and now >= next_batches:
                    self._check_batches()
                    next_batches = now + 0.1
                with self._lock:
                    active = [p for p, st in self._parts.items() if not st.revoked]
                if not active:
                    try:
                        item = self._control.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    self._apply_one(item)
                    continue
                self._flow_control(active)
                try:
                    # consume() waits for a full batch or its timeout; poll() returns the first
                    # record at once, then whatever is already fetched is drained without waiting.
                    first = self._consumer.poll(0.1)
                    msgs = [] if first is None else [first]
                    if first is not None and self.settings.fetch_batch > 1:
                        msgs.extend(
                            self._consumer.consume(
                                num_messages=self.settings.fetch_batch - 1, timeout=0
                            )
                        )
                except KafkaException as e:
                    log.warning("consume failed: %s", e)
                    time.sleep(0.1)
                    continue
                if msgs:
                    self._ingest(msgs)
        except Exception:
            log.exception("poll loop crashed; stopping the worker")
            self.fatal = "poll loop crashed"
            self._stop_requested.set()

    def _apply_control(self) -> None:
        while True:
            try:
                item = self._control.get_nowait()
            except queue.Empty:
                return
            self._apply_one(item)

    def _apply_one(self, item: tuple[str, Any]) -> None:
        kind, arg = item
        assert self._consumer is not None
        if kind == "unassign":
            parts = [p for p in arg]
            if parts:
                tps = [TopicPartition(self.topics.tasks, p) for p in parts]
                try:
                    self._consumer.incremental_unassign(tps)
                except KafkaException as e:
                    log.warning("unassign %s failed: %s", parts, e)
                self._paused.difference_update(parts)
            return
        if kind == "assign":
            generation, parts = arg
            self._assign(generation, parts)

    def _assign(self, generation: int, parts: list[int]) -> None:
        assert self._member is not None and self._consumer is not None
        committed: dict[int, int] = {}
        while not self._poll_stop.is_set():
            if self._member.generation != generation:
                log.info("generation %d superseded before its offsets were read", generation)
                return
            try:
                fetched = self._fetch_client_call(
                    lambda c: c.fetch_offsets(
                        topic=self.topics.tasks,
                        partitions=parts,
                        timeout=self.member_settings.request_timeout,
                    ),
                    self.member_settings.request_timeout,
                )
                committed = {p: po.offset for p, po in fetched.items()}
                break
            except _IO_ERRORS as e:
                log.warning("reading committed offsets failed: %s; retrying", e)
                time.sleep(0.2)
        tps = []
        with self._lock:
            for p in parts:
                old = self._parts.get(p)
                if old is not None and not old.revoked:
                    continue  # already ours in this run (should not happen with eager revoke)
                self._epoch += 1
                off = committed.get(p, -1)
                pos = off if off >= 0 else None
                self._parts[p] = _Partition(self._epoch, OffsetTracker(pos), pos)
                tps.append(
                    TopicPartition(self.topics.tasks, p, off if off >= 0 else OFFSET_BEGINNING)
                )
        if tps:
            self._consumer.incremental_assign(tps)
        log.info(
            "generation %d: consuming %s from %s",
            generation,
            parts,
            {p: committed.get(p, -1) for p in parts},
        )

    def _report(self) -> None:
        with self._lock:
            parts = {
                p: (st.committed, st.tracker.committable(), st.tracker.outstanding, st.inflight)
                for p, st in sorted(self._parts.items())
            }
        log.info(
            "executed %d, skipped %d, queued %d, parked %d; partition committed/committable/"
            "outstanding/inflight: %s",
            self.executed,
            self.skipped_completed,
            len(self._queue),
            self._parked_count,
            parts,
        )

    def _flow_control(self, active: list[int]) -> None:
        """Pause fetching while too many tasks are held in memory; resume at half."""
        assert self._consumer is not None
        held = len(self._queue) + self._parked_count
        limit = self.settings.max_outstanding
        if held >= limit and not self._paused:
            tps = [TopicPartition(self.topics.tasks, p) for p in active]
            self._consumer.pause(tps)
            self._paused.update(active)
        elif held < limit // 2 and self._paused:
            tps = [TopicPartition(self.topics.tasks, p) for p in self._paused]
            self._consumer.resume(tps)
            self._paused.clear()

    def _ingest(self, msgs: list[Any]) -> None:
        assert self._store is not None
        max_payload = self.app.settings.max_payload_bytes
        items: list[tuple[int, int, bytes, Envelope | None, str | None]] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log.debug("consumer: %s", err)
                continue
            raw = m.value() or b""
            try:
                env: Envelope | None = envelope_mod.decode(raw, max_size=max_payload)
                reason = None
            except PayloadTooLarge as e:
                env, reason = None, f"oversized payload: {e.reason}"
            except EnvelopeError as e:
                env, reason = None, f"undecodable envelope: {e.reason}"
            items.append((m.partition(), m.offset(), raw, env, reason))
        ids = [env.id for (_, _, _, env, _) in items if env is not None]
        flags = self._completed(ids)
        done_flags = iter(flags)
        now = self._clock()
        to_push: list[_Fetched] = []
        dead: list[tuple[_Fetched | None, int, int, bytes, str]] = []
        with self._lock:
            for p, off, raw, env, reason in items:
                completed = next(done_flags) if env is not None else False
                st = self._parts.get(p)
                if st is None or st.revoked:
                    continue
                try:
                    st.tracker.mark_started(off)
                except ValueError:
                    continue  # fetched twice (a seek raced a fetch): already tracked
                if env is None:
                    dead.append((None, p, off, raw, reason or "undecodable envelope"))
                    st.tracker.mark_done(off)  # the dead letter is settled before any commit
                    continue
                if completed:
                    self.skipped_completed += 1
                    st.tracker.mark_done(off)
                    continue
                task = _Fetched(env, p, off, raw, st.epoch)
                if env.batch is not None:
                    parked = self._parked.get(env.batch)
                    if parked is None:
                        parked = self._parked[env.batch] = _Parked()
                    parked.tasks.append(task)
                    self._parked_count += 1
                    continue
                to_push.append(task)
        for task in to_push:
            self._queue.push(task, now)
        for _, p, off, raw, reason in dead:
            self._dead_letter_raw(p, off, raw, reason)

    def _completed(self, ids: list[str]) -> list[bool]:
        assert self._store is not None
        backoff = 0.1
        while True:
            try:
                return self._store.completed_many(ids)
            except redis.RedisError as e:
                if self._poll_stop.is_set():
                    return [False] * len(ids)
                log.warning("checking completions failed (%s); retrying", e)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _dead_letter_raw(self, partition: int, offset: int, raw: bytes, reason: str) -> None:
        assert self._producers is not None
        log.warning("dead-lettering %s/%d: %s", partition, offset, reason)
        self._producers.dead_letter(
            DeadLetterRecord(
                original=raw,
                reason=reason,
                topic=self.topics.tasks,
                partition=partition,
                offset=offset,
                worker_id=self.worker_id,
                at=self._clock(),
            )
        )

    def _commit_periodic(self) -> None:
        assert self._member is not None and self._producers is not None
        with self._lock:
            offsets = {
                p: pos
                for p, st in self._parts.items()
                if not st.revoked
                and (pos := st.tracker.committable()) is not None
                and pos != st.committed
            }
            epochs = {p: self._parts[p].epoch for p in offsets}
        if not offsets:
            return
        if not self._producers.settle(2.0):
            log.warning("dead letters unacknowledged; commit postponed")
            return
        try:
            codes = self._member.commit_offsets(offsets, self.member_settings.request_timeout)
        except FencedError:
            return  # revoked meanwhile: on_revoked commits
        except _IO_ERRORS as e:
            log.warning("offset commit failed: %s", e)
            return
        with self._lock:
            for p, code in codes.items():
                st = self._parts.get(p)
                if code == ErrorCode.NONE and st is not None and st.epoch == epochs.get(p):
                    st.committed = offsets[p]
                elif code != ErrorCode.NONE:
                    log.info("offset commit of partition %d refused: %s", p, code.name)

    # ---- batches -----------------------------------------------------------------------

    def _gate(self) -> BatchStates:
        if self._batch_gate is None:
            gate = BatchGate(self.app.settings, abandon_after=self.settings.batch_ttl)
            gate.start(0.1)
            self._batch_gate = gate
            self._own_gate = True
        return self._batch_gate

    def _check_batches(self) -> None:
        now = self._clock()
        gate = self._gate()
        release: list[_Fetched] = []
        abandon: list[tuple[_Fetched, str]] = []
        with self._lock:
            batch_ids = list(self._parked)
        for bid in batch_ids:
            try:
                state = str(gate.state(bid))
            except Exception as e:  # noqa: BLE001 - a gate failure must not stop the loop
                log.warning("batch gate failed for %s: %s", bid, e)
                continue
            if state == "pending":
                continue
            with self._lock:
                parked = self._parked.pop(bid, None)
                if parked is None:
                    continue
                self._parked_count -= len(parked.tasks)
            if state == "committed":
                for task in parked.tasks:
                    if gate.member(bid, task.envelope.id):
                        release.append(task)
                    else:
                        abandon.append((task, f"not part of committed batch {bid}"))
            else:
                why = gate.reason(bid)
                reason = f"batch abandoned: {why}" if why else "batch abandoned"
                abandon.extend((task, reason) for task in parked.tasks)
        for task in release:
            self._queue.push(task, now)
        for task, reason in abandon:
            self._finish_dead(task, reason, None, None)

    def _drop_parked(self, partitions: set[int]) -> None:
        """Drop parked batch tasks of revoked partitions (caller holds the lock)."""
        for bid in list(self._parked):
            parked = self._parked[bid]
            keep = [t for t in parked.tasks if t.partition not in partitions]
            self._parked_count -= len(parked.tasks) - len(keep)
            if keep:
                parked.tasks = keep
            else:
                del self._parked[bid]

    # ---- handler threads ---------------------------------------------------------------

    def _rng(self) -> random.Random:
        rng: random.Random | None = getattr(self._rngs, "rng", None)
        if rng is None:
            rng = self._rngs.rng = random.Random()
        return rng

    def _claim(self, task: _Fetched) -> bool:
        """May this task start now? Counts it in flight if so."""
        assert self._member is not None
        with self._lock:
            st = self._parts.get(task.partition)
            if st is None or st.revoked or st.epoch != task.epoch:
                return False
            # Self-fencing: the session lease must still hold (checked under our lock so a
            # revoke cannot slip between the check and the in-flight count).
            if not self._member.owns(task.partition):
                return False
            st.inflight += 1
            return True

    def _release(self, task: _Fetched) -> None:
        with self._changed:
            st = self._parts.get(task.partition)
            if st is not None and st.epoch == task.epoch:
                st.inflight -= 1
                self._changed.notify_all()

    def _run_task(self, qt: QueuedTask) -> None:
        assert isinstance(qt, _Fetched)
        if not self._window.acquire():
            return  # stopping
        handed = False
        try:
            handed = self._run_claimed(qt)
        finally:
            if not handed:
                self._window.release()

    def _run_claimed(self, task: _Fetched) -> bool:
        """Run a task holding a window slot; True when the slot went to the flusher with the
        task's completion (else the caller gives it back)."""
        assert self._producers is not None and self._flusher is not None
        if not self._claim(task):
            log.debug("dropping %s/%d: partition not held", task.partition, task.offset)
            return False
        env = task.envelope
        started = self._clock()
        self._flusher.started(env.id)
        self._event(env, EventKind.STARTED, started)
        outcome = execute(env, self.app.registry, self._rng(), worker_id=self.worker_id)
        self.executed += 1
        now = self._clock()
        if isinstance(outcome, Succeeded):
            write = CompletionWrite(env.id, packed=outcome.packed, at=now, worker_id=self.worker_id)
            self._flusher.submit(Finished(task, task.epoch, write, holds_slot=True))
            return True
        if isinstance(outcome, Retry):
            self._event(env, EventKind.FAILED, now, error=f"{outcome.error_type}: {outcome.error}")
            self._event(env, EventKind.RETRYING, now, delay=outcome.delay)
            self._flusher.status(env.id, Status.RETRYING)
            nxt = dataclasses.replace(task, envelope=env.next_attempt())
            self._queue.push_backoff(nxt, now + outcome.delay)
            self._release(task)
            return False
        if isinstance(outcome, Unschedulable):
            self._flusher.status(env.id, Status.UNSCHEDULABLE)
            self._queue.push_unschedulable(task, outcome.service, outcome.retry_at, now)
            self._release(task)
            return False
        assert isinstance(outcome, DeadLetter)
        if outcome.error_type is not None:
            self._event(env, EventKind.FAILED, now, error=f"{outcome.error_type}: {outcome.error}")
        return self._finish_dead(
            task, outcome.reason, outcome.error_type, outcome.error, claimed=True
        )

    def _finish_dead(
        self,
        task: _Fetched,
        reason: str,
        error_type: str | None,
        error: str | None,
        *,
        claimed: bool = False,
    ) -> bool:
        """Dead-letter a decoded task: the record, its final failure, an event; its offset is
        done once the failure is recorded. A `claimed` task (run by a handler) holds a window
        slot, which goes to the flusher with it; True when it did."""
        assert self._producers is not None and self._flusher is not None
        env = task.envelope
        now = self._clock()
        log.warning("dead-lettering task %s (%s): %s", env.id, env.name, reason)
        self._producers.dead_letter(
            DeadLetterRecord(
                original=task.raw,
                reason=reason,
                topic=self.topics.tasks,
                partition=task.partition,
                offset=task.offset,
                worker_id=self.worker_id,
                at=now,
                task_id=env.id,
                name=env.name,
                attempt=env.attempt,
            )
        )
        self._event(env, EventKind.DEAD_LETTERED, now, error=reason)
        if not claimed:
            with self._lock:
                st = self._parts.get(task.partition)
                if st is None or st.epoch != task.epoch:
                    return False
                st.inflight += 1
        write = CompletionWrite(
            env.id,
            error_type=error_type or "DeadLettered",
            error=error if error is not None else reason,
            at=now,
            worker_id=self.worker_id,
        )
        self._flusher.submit(Finished(task, task.epoch, write, holds_slot=claimed))
        return claimed

    def _event(
        self,
        env: Envelope,
        kind: EventKind,
        at: float,
        *,
        error: str | None = None,
        delay: float | None = None,
    ) -> None:
        assert self._producers is not None
        value = self._events.pack(env.id, env.name, kind, env.attempt, at, error=error, delay=delay)
        self._producers.event(env.id, value)

    # ---- flusher thread ----------------------------------------------------------------

    def _after_record(self, items: Sequence[Finished]) -> None:
        """Completions are recorded: mark their offsets done, say so in events."""
        now = self._clock()
        with self._changed:
            for item in items:
                st = self._parts.get(item.task.partition)
                if st is not None and st.epoch == item.epoch:
                    st.tracker.mark_done(item.task.offset)
                    st.inflight -= 1
            self._changed.notify_all()
        for item in items:
            env = item.task.envelope
            if not item.recorded:
                log.info("task %s had already completed; its record is kept", env.id)
            elif item.write.ok:
                self._event(env, EventKind.SUCCEEDED, now)
