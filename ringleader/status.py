"""What `ringleader status` shows, gathered from the broker and Redis.

* the group: state, members and their partitions in the committed generation, its rebalance
  protocol and pending revocations (`ringleader.groupview`);
* per member, what its worker reports through Redis: the partitions it announces holding
  (its registry labels) and the tasks it is running (the task ledger's running hash, only
  runs of a live process: `worker.ledger.running_live`), with the longest-running one's age;
* lag per partition of `<ns>.tasks`: end offset minus the group's committed offset
  (OffsetFetch through `coordinator.wire`);
* the dead-letter count: records between the start and the end of `<ns>.dead-letter`;
* registry services and instances (`registry.cli.ls/summary`) and the circuit breakers whose
  state is shared through Redis (pybreaker's CircuitRedisStorage keys under the registry
  prefix).

End offsets: Tansu answers ListOffsets(latest) with the base offset of the partition's last
record batch + 1, so a watermark undercounts when the last batch holds several records. The
end offset is therefore the watermark corrected by reading the record batch at it.

Each part is gathered on its own; one that fails is reported in `errors` and the rest shown.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import redis as redis_lib
from confluent_kafka import Consumer, KafkaException, TopicPartition

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.wire import GroupClient
from ringleader.errors import BrokerUnavailableError, RingleaderError
from ringleader.groupview import LongestRun, MemberView, read_group, with_activity
from ringleader.redisurl import redact
from ringleader.worker.lanes import Level
from ringleader.worker.ledger import RunningTask, running_live
from ringleader.worker.routing import topics
from ringleader.worker.settings import AppSettings

__all__ = [
    "Fleet",
    "LongestRun",
    "MemberView",
    "PartitionLag",
    "StatusReport",
    "fleet_of",
    "format_text",
    "gather",
    "group_id_for",
]


def group_id_for(namespace: str, environ: Mapping[str, str] | None = None) -> str:
    """The workers' group: RINGLEADER_GROUP_ID, else `<ns>.workers` (as the runtime uses)."""
    env = os.environ if environ is None else environ
    return env.get("RINGLEADER_GROUP_ID") or f"{namespace}.workers"


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    end: int
    committed: int | None  # None: the group never committed this partition
    lag: int
    level: str = "normal"  # the priority level's topic (worker.lanes)


@dataclass(frozen=True, slots=True)
class Fleet:
    """The fleet-wide numbers, the ones a worker's /metrics shows for itself alone."""

    members: int
    partitions: int  # assigned in the generation shown
    in_flight: int | None  # tasks the live workers run now; None: Redis not read
    lag: int | None
    dead_letters: int | None
    breakers_open: int  # shared breakers in state "open"
    instances: int  # registry instances seen (ours and the downstream services)
    # Sum of the committed offsets over every lane: grows by one per task finished (done,
    # failed for good or dead-lettered) and committed, so two reports give a rate.
    committed: int


@dataclass(slots=True)
class StatusReport:
    namespace: str
    group: str
    group_state: str | None = None
    generation: int | None = None
    leader: str | None = None
    # "live": the members' SyncGroup pointers named it; "log": the last commit on the
    # assignment log (no live member, or a broker that does not describe assignments: Tansu)
    assignment_source: str | None = None
    protocol: str | None = None  # the generation's rebalance protocol: "eager"/"cooperative"
    # pending revocations: member id -> partitions it must release in this generation
    revoking: dict[str, list[int]] = field(default_factory=dict)
    members: list[MemberView] = field(default_factory=list)
    lag: list[PartitionLag] = field(default_factory=list)
    total_lag: int | None = None
    dead_letters: int | None = None
    instances: list[dict[str, Any]] = field(default_factory=list)
    registry: dict[str, Any] | None = None
    breakers: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unreachable: bool = False  # Redis could not be reached (the broker raises instead)
    fleet: Fleet | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def gather(
    settings: AppSettings,
    *,
    group_id: str | None = None,
    registry_prefix: str = "ringleader:registry",
    timeout: float = 10.0,
) -> StatusReport:
    """Collect the whole report; raises BrokerUnavailableError only if the broker cannot be
    reached at all (each other failure lands in `errors`)."""
    group = group_id or group_id_for(settings.namespace)
    report = StatusReport(settings.namespace, group)
    t = topics(settings.namespace)
    consumer = _consumer(settings)
    try:
        try:
            md = consumer.list_topics(timeout=timeout)
        except KafkaException as e:
            raise BrokerUnavailableError(
                f"cannot reach the broker at {settings.bootstrap} within {timeout:g}s: {e}"
            ) from e
        parts = {
            name: sorted(md.topics[name].partitions)
            for name in (*t.lanes.all(), t.dead_letter)
            if name in md.topics and md.topics[name].error is None
        }
        if t.tasks not in parts:
            report.errors.append(f"topic {t.tasks!r} does not exist (nothing submitted yet?)")
        _group(report, settings, group, timeout)
        lag = functools.partial(_lag, report, settings, consumer, group=group, timeout=timeout)
        for level in Level:  # each priority level's topic
            if (name := t.lanes.topic(level)) in parts:
                lag(topic=name, partitions=parts[name], level=level.name.lower())
        if t.dead_letter in parts:
            ends = end_offsets(consumer, t.dead_letter, parts[t.dead_letter], timeout)
            report.dead_letters = sum(hi - lo for lo, hi in ends.values())
        else:
            report.dead_letters = 0
    finally:
        consumer.close()
    running = _registry(report, settings, registry_prefix)
    report.members = with_activity(report.members, running, _held(report), time.time())
    report.fleet = fleet_of(report)
    return report


def fleet_of(report: StatusReport) -> Fleet:
    running = [m.running for m in report.members if m.running is not None]
    return Fleet(
        members=len(report.members),
        partitions=sum(len(m.partitions or []) for m in report.members),
        in_flight=sum(running) if running or report.members == [] else None,
        lag=report.total_lag,
        dead_letters=report.dead_letters,
        breakers_open=sum(1 for b in report.breakers if b["state"] == "open"),
        instances=len(report.instances),
        committed=sum(pl.committed for pl in report.lag if pl.committed is not None),
    )


def _group(report: StatusReport, settings: AppSettings, group: str, timeout: float) -> None:
    view = read_group(settings, group, timeout)
    report.group_state, report.generation, report.leader = view.state, view.generation, view.leader
    report.assignment_source = view.assignment_source
    report.protocol, report.revoking = view.protocol, view.revoking
    report.members = view.members
    report.errors.extend(view.errors)


def _consumer(settings: AppSettings) -> Consumer:
    return Consumer(
        {
            **settings.librdkafka_config(),
            "group.id": f"ringleader-status-{uuid.uuid4().hex}",  # assign() only: never joined
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 50,
            "log_level": 2,  # no per-attempt connection noise: failures raise a clear error
        }
    )


def end_offsets(
    consumer: Consumer, topic: str, partitions: list[int], timeout: float
) -> dict[int, tuple[int, int]]:
    """(start, end) offsets per partition, the end corrected for Tansu (see the module doc)."""
    deadline = time.monotonic() + timeout
    out: dict[int, tuple[int, int]] = {}
    for p in partitions:
        lo, hi = consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=max(0.1, deadline - time.monotonic()), cached=False
        )
        out[p] = (int(lo), int(hi))
    probe = [TopicPartition(topic, p, hi - 1) for p, (lo, hi) in out.items() if hi > lo]
    if not probe:
        return out
    consumer.assign(probe)
    waiting = {tp.partition for tp in probe}
    quiet_until = None
    # Read the batch at end-1 of each partition; stop once each answered and nothing more came.
    while time.monotonic() < deadline:
        msgs = consumer.consume(1000, timeout=0.1)
        got = False
        for m in msgs:
            if m.error() is not None or m.offset() is None:
                continue
            got = True
            p, off = m.partition() or 0, int(m.offset() or 0)
            lo, hi = out[p]
            out[p] = (lo, max(hi, off + 1))
            waiting.discard(p)
        if not waiting:
            if got:
                quiet_until = time.monotonic() + 0.2
            elif quiet_until is None or time.monotonic() >= quiet_until:
                break
    consumer.unassign()
    return out


def _lag(
    report: StatusReport,
    settings: AppSettings,
    consumer: Consumer,
    *,
    group: str,
    topic: str,
    partitions: list[int],
    timeout: float,
    level: str,
) -> None:
    try:
        ends = end_offsets(consumer, topic, partitions, timeout)
    except KafkaException as e:
        report.errors.append(f"end offsets of {topic!r}: {e}")
        return
    committed: dict[int, int] = {}
    gc = GroupClient(settings.bootstrap, group, connect_timeout=timeout, security=settings.security)
    try:
        gc.find_coordinator(timeout)
        for p, po in gc.fetch_offsets(topic=topic, partitions=partitions, timeout=timeout).items():
            if po.error == ErrorCode.NONE and po.offset >= 0:
                committed[p] = po.offset
    except RingleaderError as e:
        report.errors.append(f"committed offsets of group {group!r}: {e}")
    finally:
        gc.close()
    total = 0
    for p in partitions:
        lo, hi = ends[p]
        c = committed.get(p)
        lag = max(0, hi - (c if c is not None else lo))
        total += lag
        if level == "normal" or hi > 0:  # a priority level never used stays out of the table
            report.lag.append(PartitionLag(p, hi, c, lag, level))
    report.total_lag = (report.total_lag or 0) + total


def _registry(
    report: StatusReport, settings: AppSettings, prefix: str
) -> dict[str, list[RunningTask]] | None:
    """Fills the registry parts; returns the members' runs in progress (None: not read)."""
    from ringleader.registry.backend import RegistryBackend
    from ringleader.registry.cli import ls, summary
    from ringleader.registry.errors import RegistryError

    r: redis_lib.Redis[bytes] = redis_lib.Redis.from_url(
        settings.redis, socket_connect_timeout=5, socket_timeout=5
    )
    try:
        try:
            backend = RegistryBackend(r, prefix)
            # Every namespace's workers register as `<ns>.workers`: show ours and the
            # downstream services, not the workers of other namespaces.
            own = f"{settings.namespace}.workers"
            report.instances = [
                i
                for i in ls(backend)
                if i["service"] == own or not i["service"].endswith(".workers")
            ]
            report.registry = summary(backend)
            report.breakers = shared_breakers(r, prefix)
        except (redis_lib.RedisError, RegistryError, ValueError) as e:
            if isinstance(e, redis_lib.ConnectionError | redis_lib.TimeoutError):
                report.unreachable = True
            report.errors.append(f"registry at {redact(settings.redis)}: {e}")
            if report.unreachable:
                return None
        return _running(report, r, settings)
    finally:
        r.close()


def _running(
    report: StatusReport, r: redis_lib.Redis[bytes], settings: AppSettings
) -> dict[str, list[RunningTask]] | None:
    # The same prefix as the workers' task ledger (`worker.runtime`).
    workers = [m.worker_id for m in report.members if m.worker_id]
    try:
        return running_live(r, f"ringleader:{settings.namespace}", workers)
    except (redis_lib.RedisError, ValueError) as e:
        report.errors.append(f"running tasks at {redact(settings.redis)}: {e}")
        return None


def _held(report: StatusReport) -> dict[str, list[int]]:
    """Worker id -> the partitions it announces holding (its registry labels)."""
    own = f"{report.namespace}.workers"
    out: dict[str, list[int]] = {}
    for i in report.instances:
        text = i.get("labels", {}).get("partitions")
        if i["service"] == own and isinstance(text, str):
            with contextlib.suppress(ValueError):
                out[i["instance"]] = sorted(int(p) for p in text.split(",") if p)
    return out


def shared_breakers(r: redis_lib.Redis[bytes], prefix: str) -> list[dict[str, Any]]:
    """Breakers whose state is kept in Redis (`registry.breakers.redis_storage(r, prefix)`)."""
    head, tail = f"{prefix}:breaker:", ":pybreaker:state"
    out = []
    for raw in r.scan_iter(match=f"{head}*{tail}", count=1000):
        key = raw.decode()
        name = key[len(head) : -len(tail)]
        base = key[: -len("state")]
        state, fails, opened = r.mget([key, base + "fail_counter", base + "opened_at"])
        service, _, instance = name.partition("/")
        out.append(
            {
                "service": service,
                "instance": instance,
                "state": (state or b"").decode(),
                "failures": int(fails or 0),
                "opened_at": None if opened is None else float(opened),
            }
        )
    return sorted(out, key=lambda b: (b["service"], b["instance"]))


def format_text(report: StatusReport) -> str:
    """The report as text (`status_text`; kept here for callers of this module)."""
    from ringleader.status_text import format_text as text

    return text(report)
