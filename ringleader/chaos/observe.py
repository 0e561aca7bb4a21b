"""What the runner watches while a scenario runs: committed generations, the submit load, and
(afterwards) the completion events on `<ns>.events`.

Generations are read from `<ns>.assignments` with the log's own `TxAssembler` and stamped
with the commit record's timestamp (the leader's producer clock, this machine's), so the
fault-to-generation figure does not depend on how often the watcher polls.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from ringleader.client import Client
from ringleader.coordinator.assignment import KIND as ASSIGN_KIND
from ringleader.coordinator.assignment import Assignment
from ringleader.coordinator.twophase import Applied, Inconsistent, TxAssembler, digest
from ringleader.errors import RingleaderError
from ringleader.groupview import worker_id_from_member
from ringleader.worker.envelope import EventKind, decode_event
from ringleader.worker.errors import EnvelopeError
from ringleader.worker.routing import topics
from ringleader.worker.settings import AppSettings

__all__ = [
    "Committed",
    "GenerationWatcher",
    "Load",
    "completion_events",
    "owners_by_worker",
    "worker_of",
]

log = logging.getLogger("ringleader.chaos")


@dataclass(frozen=True, slots=True)
class Committed:
    assignment: Assignment
    at: float  # the commit record's timestamp, wall-clock seconds
    digest: bytes  # of its parts (the 2PC digest): names the content, not just the number


def worker_of(a: Assignment, member_id: str) -> str:
    """The worker id behind a member of `a` (the member id itself if it names none)."""
    return a.workers.get(member_id) or worker_id_from_member(member_id) or member_id


def owners_by_worker(a: Assignment) -> dict[str, set[int]]:
    """Worker id -> partitions it owns in `a` (members without partitions left out)."""
    out: dict[str, set[int]] = {}
    for member, parts in a.owners.items():
        if parts:
            out.setdefault(worker_of(a, member), set()).update(parts)
    return out


def _consumer(settings: AppSettings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.bootstrap,
            "group.id": "ringleader-chaos-observer",  # never joined: partitions are assigned
            "enable.auto.commit": False,
            "log_level": 0,
            **settings.security.librdkafka_config(),
        }
    )


class GenerationWatcher:
    """A thread that reads every committed generation as it lands."""

    def __init__(self, settings: AppSettings) -> None:
        self._topic = topics(settings.namespace).assignments
        self._consumer = _consumer(settings)
        self._consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        self._assembler = TxAssembler(ASSIGN_KIND)
        self._lock = threading.Lock()
        self._committed: list[Committed] = []
        self.inconsistent: list[str] = []  # commits the log itself judged bad (invariant 5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-generations", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None or msg.offset() is None:
                continue  # a broker down for the scenario: librdkafka retries
            for outcome in self._assembler.feed(msg.key(), msg.value(), msg.offset() or 0):
                if isinstance(outcome, Inconsistent):
                    self.inconsistent.append(f"{outcome.txid}: {outcome.reason}")
                if not isinstance(outcome, Applied):
                    continue
                try:
                    a = Assignment.from_parts(outcome.parts)
                except (ValueError, RingleaderError) as e:
                    self.inconsistent.append(f"{outcome.txid}: parts do not decode: {e}")
                    continue
                at = msg.timestamp()[1] / 1000.0
                with self._lock:
                    self._committed.append(Committed(a, at, digest(outcome.parts)))

    @property
    def committed(self) -> list[Committed]:
        with self._lock:
            return list(self._committed)

    @property
    def last(self) -> Committed | None:
        with self._lock:
            return self._committed[-1] if self._committed else None

    def first_after(self, at: float) -> Committed | None:
        return next((c for c in self.committed if c.at > at), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


class Load:
    """Submits `ledger` tasks at a steady rate from a thread until stopped; what the broker
    acknowledged is accepted, the rest refused (counted)."""

    def __init__(self, settings: AppSettings, rate: float, steps: int, step_s: float) -> None:
        self.accepted: dict[str, int] = {}  # task id -> partition
        self.refused: Counter[str] = Counter()  # error type -> count
        self._settings = settings
        self._interval = 1.0 / rate
        self._kwargs = {"steps": steps, "step_s": step_s}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        # The load outlives brokers the scenario kills: a short submit timeout keeps it
        # trying (each refusal is counted), and librdkafka's reconnect log stays quiet.
        quiet: dict[str, str | int | float | bool] = {"log_level": 0}
        with Client(settings=self._settings, submit_timeout=5.0, producer_config=quiet) as client:
            due = time.monotonic()
            while not self._stop.is_set():
                try:
                    h = client.submit("ledger", kwargs=self._kwargs)
                    self.accepted[h.id] = -1 if h.partition is None else h.partition
                except RingleaderError as e:
                    self.refused[type(e).__name__] += 1
                due = max(due + self._interval, time.monotonic() - 1.0)
                self._stop.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)
        # The closed client's librdkafka handle sits in a reference cycle: free it now, not
        # when the brokers it knew are gone and it would log every failed reconnect.
        gc.collect()


def completion_events(settings: AppSettings, timeout: float = 30.0) -> tuple[Counter[str], int]:
    """Per task id, the completions announced on `<ns>.events` (succeeded or dead-lettered),
    and how many of them were dead letters. Events are best effort, so a missing one proves
    nothing; two for one task mean it completed twice."""
    topic = topics(settings.namespace).events
    c = _consumer(settings)
    done: Counter[str] = Counter()
    dead = 0
    try:
        meta = c.list_topics(topic, timeout=timeout).topics[topic]
        ends: dict[int, int] = {}
        for p in meta.partitions:
            _, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout, cached=False)
            if high > 0:
                ends[p] = high
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in c.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("reading %s: %s", topic, err)
                    continue
                p, off = msg.partition() or 0, msg.offset() or 0
                if off + 1 >= ends.get(p, 0):
                    ends.pop(p, None)
                with contextlib.suppress(EnvelopeError):
                    ev = decode_event(msg.value() or b"")
                    if ev.kind in (EventKind.SUCCEEDED, EventKind.DEAD_LETTERED):
                        done[ev.task_id] += 1
                        dead += ev.kind is EventKind.DEAD_LETTERED
        if ends:
            raise TimeoutError(f"{topic}: not read to its end within {timeout}s")
    finally:
        c.close()
    return done, dead
