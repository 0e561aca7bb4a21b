"""Worker processes facing bad input and slow or failing tasks, on Apache Kafka and Tansu:
poison records end in the dead-letter topic with their reason and the worker keeps going;
retries back off visibly; a task longer than 3x the session timeout keeps the partitions;
a batch runs entirely once committed and not at all when its producer died before the commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringleader.client import Client, TaskSpec
from ringleader.worker.envelope import (
    Envelope,
    EventKind,
    decode_dead_letter,
    decode_event,
    encode,
    new_task_id,
)
from ringleader.worker.errors import TaskError
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 4
MAX_PAYLOAD = 64 * 1024


@pytest.fixture
def settings(broker: str, redis_url: str, unique_name: str) -> AppSettings:
    s = AppSettings(
        namespace=unique_name,
        bootstrap=broker,
        redis=redis_url,
        partitions=PARTITIONS,
        max_payload_bytes=MAX_PAYLOAD,
    )
    ensure_topics(s)
    return s


@pytest.fixture
def workers(settings: AppSettings, tmp_path: Path) -> Iterator[procs.Workers]:
    extra = {"RINGLEADER_MAX_PAYLOAD_BYTES": str(MAX_PAYLOAD), "RINGLEADER_WORKER_BATCH_TTL": "6"}
    with procs.workers_of(settings, tmp_path, extra=extra) as ws:
        yield ws


@pytest.fixture
def client(settings: AppSettings) -> Iterator[Client]:
    c = Client(settings=settings)
    try:
        yield c
    finally:
        c.close()


def test_poison_records_are_dead_lettered_and_the_worker_keeps_running(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    ns, bs = settings.namespace, settings.bootstrap
    w = workers.start("w1", concurrency=2)
    unknown = Envelope(id=new_task_id(), name="no.such.task", submitted_at=time.time())
    big = Envelope(
        id=new_task_id(), name="count", args=["x" * (MAX_PAYLOAD + 1000)], submitted_at=time.time()
    )
    procs.produce(
        bs,
        f"{ns}.tasks",
        [b"\x93garbage\xff", encode(unknown), encode(big, max_size=None)],
    )
    # Good tasks after the poison ones still run (on every partition).
    handles = client.submit_many([TaskSpec("count", kwargs={"n": i}) for i in range(40)])
    assert [h.result(timeout=120) for h in handles] == list(range(40))

    records = [
        decode_dead_letter(v)
        for v in procs.read_topic(bs, f"{ns}.dead-letter", lambda vs: len(vs) >= 3, 60)
    ]
    assert len(records) == 3, records
    by_original = {r.original: r for r in records}
    assert by_original[encode(unknown)].reason == "unknown task name 'no.such.task'"
    assert by_original[encode(unknown)].task_id == unknown.id
    # An oversized record is not decoded at all (its id stays unknown).
    oversized = by_original[encode(big, max_size=None)]
    assert oversized.reason.startswith("oversized payload") and "too large" in oversized.reason
    garbage = by_original[b"\x93garbage\xff"]
    assert garbage.task_id is None and garbage.reason.startswith("undecodable envelope")
    # The decodable poison's failure is its result; the worker is still up.
    with pytest.raises(TaskError):
        client.result(unknown.id, timeout=10)
    assert w.alive()


def test_failing_twice_then_succeeding_retries_with_visible_backoff(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    workers.start("w1", concurrency=2)
    h = client.submit("flaky", kwargs={"fail_times": 2})
    assert h.result(timeout=120) == 3
    assert procs.executions(settings.redis, settings.namespace) == {h.id: 3}

    def mine(values: list[bytes]) -> bool:
        return any(
            (ev := decode_event(v)).task_id == h.id and ev.kind is EventKind.SUCCEEDED
            for v in values
        )

    events = [
        ev
        for ev in map(
            decode_event,
            procs.read_topic(settings.bootstrap, f"{settings.namespace}.events", mine, 60),
        )
        if ev.task_id == h.id
    ]
    kinds = [(ev.kind.value, ev.attempt) for ev in events]
    assert kinds == [
        ("started", 1),
        ("failed", 1),
        ("retrying", 1),
        ("started", 2),
        ("failed", 2),
        ("retrying", 2),
        ("started", 3),
        ("succeeded", 3),
    ]
    retrying = [ev for ev in events if ev.kind is EventKind.RETRYING]
    started = [ev for ev in events if ev.kind is EventKind.STARTED]
    # Exponential: 0.4 s then 0.8 s (+ up to 0.1 s jitter); the next start waits for it.
    assert retrying[0].delay is not None and 0.4 <= retrying[0].delay <= 0.5
    assert retrying[1].delay is not None and 0.8 <= retrying[1].delay <= 0.9
    for r, s in zip(retrying, started[1:], strict=True):
        assert r.delay is not None
        assert s.at - r.at >= r.delay - 0.01, (r, s)


def test_long_task_past_three_session_timeouts_keeps_the_partitions(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    w = workers.start("w1", concurrency=2)
    # 20 s of a GIL-holding loop; the session timeout is 6 s.
    h = client.submit("spin", kwargs={"seconds": 20.0})
    assert h.result(timeout=120) == 20.0
    after = client.submit_many([TaskSpec("count", kwargs={"n": i}) for i in range(8)])
    assert [x.result(timeout=60) for x in after] == list(range(8))
    assert procs.executions(settings.redis, settings.namespace)[h.id] == 1
    text = w.log_text()
    assert text.count("applied: partitions") == 1, "the worker's assignment changed"
    assert "revoking" not in text and "fenced" not in text


def test_batch_runs_all_when_committed_and_none_when_the_producer_died(
    workers: procs.Workers, client: Client, settings: AppSettings
) -> None:
    workers.start("w1", concurrency=2)
    workers.start("w2", concurrency=2)
    dead = client.batches.submit(
        [TaskSpec("count", kwargs={"n": i}) for i in range(6)], commit=False
    )
    ok = client.submit_batch([TaskSpec("count", kwargs={"n": i}) for i in range(6)])
    assert [h.result(timeout=120) for h in ok] == list(range(6))
    dead_ids = {h.id for h in dead}
    # The uncommitted batch is dead-lettered as abandoned once the TTL (6 s) has passed.
    records = [
        decode_dead_letter(v)
        for v in procs.read_topic(
            settings.bootstrap, f"{settings.namespace}.dead-letter", lambda vs: len(vs) >= 6, 90
        )
    ]
    assert {r.task_id for r in records} == dead_ids
    assert all(r.reason.startswith("batch abandoned") for r in records), records
    execs = procs.executions(settings.redis, settings.namespace)
    assert not dead_ids & set(execs), "a task of the uncommitted batch ran"
    assert {h.id for h in ok} <= set(execs)
