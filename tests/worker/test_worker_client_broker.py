"""Client against real brokers (Apache Kafka and Tansu) and real Redis.

Results come from a tiny in-test consumer that completes tasks through ResultStore the way a
worker does (the worker runtime is tested on its own).
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ringleader.client import Client, SubmitError, TaskSpec, idempotent_task_id
from ringleader.coordinator.errors import BrokerUnavailableError
from ringleader.worker.batches import BatchGate, BatchState, part_value
from ringleader.worker.envelope import Envelope, decode
from ringleader.worker.errors import EnvelopeError, PayloadTooLarge, ResultTimeout, TaskError
from ringleader.worker.lanes import Level, level_for
from ringleader.worker.results import ResultStore, Status
from ringleader.worker.routing import partition_for
from ringleader.worker.settings import AppSettings

pytestmark = [pytest.mark.broker, pytest.mark.redis]

PARTITIONS = 4


@pytest.fixture
def settings(broker: str, redis_url: str, unique_name: str) -> AppSettings:
    return AppSettings(
        namespace=unique_name, bootstrap=broker, redis=redis_url, partitions=PARTITIONS
    )


@pytest.fixture
def client(settings: AppSettings) -> Iterator[Client]:
    c = Client(settings=settings)
    yield c
    c.close()
    r: redis.Redis[bytes] = redis.Redis.from_url(settings.redis)
    keys = list(r.scan_iter(match=f"ringleader:{settings.namespace}:*"))
    if keys:
        r.delete(*keys)
    r.close()


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused-assign-only",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )


def read_records(
    bootstrap: str, topic: str, partitions: int, n: int, timeout: float = 30.0
) -> list[tuple[int, int, bytes | None, bytes]]:
    """(partition, offset, key, value) of the first `n` records of `topic`."""
    c = _consumer(bootstrap)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[int, int, bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.5):
                if m.error() is None:
                    out.append((m.partition() or 0, m.offset() or 0, m.key(), m.value() or b""))
    finally:
        c.close()
    return out


def record_count(bootstrap: str, topic: str, partitions: int, idle: float = 1.0) -> int:
    """Records of `topic`, counted by reading until nothing arrives for `idle` seconds.

    Not by watermarks: Tansu's ListOffsets answers the last batch's base offset + 1.
    """
    c = _consumer(bootstrap)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    n = 0
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle:
            msgs = [m for m in c.consume(1000, timeout=0.2) if m.error() is None]
            if msgs:
                n += len(msgs)
                last = time.monotonic()
    finally:
        c.close()
    return n


class TinyWorker:
    """Consumes `<ns>.tasks` (assign, no group) and completes tasks through ResultStore:
    "add" returns the sum of its args, "boom" fails for good."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.store = ResultStore.from_url(settings.redis, settings.namespace)
        self.seen: list[Envelope] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TinyWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        c = _consumer(self.settings.bootstrap)
        topic = f"{self.settings.namespace}.tasks"
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        ttl = 60.0
        try:
            while not self._stop.is_set():
                for m in c.consume(100, timeout=0.1):
                    if m.error() is not None:
                        continue
                    env = decode(m.value() or b"")
                    self.seen.append(env)
                    self.store.set_status(env.id, Status.STARTED, ttl)
                    if env.name == "add":
                        self.store.record_completion(env.id, sum(env.args), ttl)
                    elif env.name == "boom":
                        self.store.record_failure(env.id, "ValueError", "no good", ttl)
        finally:
            c.close()


def test_submit_is_acknowledged_and_the_record_is_the_envelope(
    client: Client, settings: AppSettings
) -> None:
    h = client.submit("add", args=[1, 2], kwargs={"x": "y"}, priority=5, not_before=123.5)
    # A priority above 0 puts the task on the high level's topic (worker.lanes).
    high = client.topics.lanes.topic(Level.HIGH)
    [(part, _, key, value)] = read_records(settings.bootstrap, high, PARTITIONS, 1)
    assert key is None and part == h.partition
    env = decode(value)
    assert env.id == h.id and env.name == "add" and env.args == [1, 2]
    assert env.kwargs == {"x": "y"} and env.priority == 5 and env.not_before == 123.5
    assert env.batch is None and env.attempt == 1 and env.submitted_at > 0


def test_each_priority_level_has_its_own_co_partitioned_topic(
    client: Client, settings: AppSettings
) -> None:
    keyed = [TaskSpec("add", key="order-9", priority=p) for p in (-2, 0, 3)]
    handles = client.submit_many(keyed)
    assert len({h.partition for h in handles}) == 1  # the same key, the same partition
    for level in (Level.LOW, Level.NORMAL, Level.HIGH):
        topic = client.topics.lanes.topic(level)
        [(part, _, _, value)] = read_records(settings.bootstrap, topic, PARTITIONS, 1)
        assert part == handles[0].partition
        assert level_for(decode(value).priority) is level


def test_a_burst_of_unkeyed_tasks_is_spread_evenly_over_the_partitions(
    client: Client, settings: AppSettings
) -> None:
    # librdkafka's sticky partitioner would put the whole burst on one partition.
    handles = client.submit_many([TaskSpec("add", args=[i]) for i in range(10 * PARTITIONS)])
    recs = read_records(settings.bootstrap, client.topics.tasks, PARTITIONS, len(handles))
    per_partition = collections.Counter(p for p, _, _, _ in recs)
    assert per_partition == dict.fromkeys(range(PARTITIONS), 10)
    by_id = {decode(v).id: p for p, _, _, v in recs}
    assert all(by_id[h.id] == h.partition for h in handles)


def test_key_goes_to_the_murmur2_partition(client: Client, settings: AppSettings) -> None:
    handles = [client.submit("add", args=[i], key=f"user-{i}") for i in range(12)]
    for i, h in enumerate(handles):
        assert h.partition == partition_for(f"user-{i}", PARTITIONS)
    recs = read_records(settings.bootstrap, client.topics.tasks, PARTITIONS, 12)
    assert {(p, k) for p, _, k, _ in recs} == {
        (partition_for(f"user-{i}", PARTITIONS), f"user-{i}".encode()) for i in range(12)
    }


def test_oversized_payload_is_refused_at_submit_and_nothing_is_produced(
    client: Client, settings: AppSettings
) -> None:
    client.submit("add", args=[1])  # creates the topic: one record
    with pytest.raises(PayloadTooLarge) as e:
        client.submit("add", args=["x" * (settings.max_payload_bytes + 1)])
    assert e.value.limit == settings.max_payload_bytes and e.value.size > e.value.limit
    assert "bytes exceeds the limit" in str(e.value) and "'add'" in str(e.value)
    with pytest.raises(PayloadTooLarge):  # one bad task in a many-submit: none is produced
        client.submit_many([TaskSpec("add", [1]), TaskSpec("add", ["x" * 2_000_000])])
    assert record_count(settings.bootstrap, client.topics.tasks, PARTITIONS) == 1


def test_bad_arguments_get_clear_errors(client: Client) -> None:
    with pytest.raises(EnvelopeError, match="not msgpack-serialisable"):
        client.submit("add", args=[object()])
    with pytest.raises(EnvelopeError, match="string keys"):
        client.submit("add", kwargs={1: 2})  # type: ignore[dict-item]
    with pytest.raises(EnvelopeError, match="name must be a non-empty string"):
        client.submit("")
    with pytest.raises(EnvelopeError, match="priority"):
        client.submit("add", priority="high")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown task spec fields"):
        client.submit_many([{"name": "add", "argz": [1]}])


def test_submit_many_acknowledges_every_task(client: Client, settings: AppSettings) -> None:
    handles = client.submit_many([{"name": "add", "args": [i]} for i in range(2000)])
    assert len(handles) == 2000 and len({h.id for h in handles}) == 2000
    assert record_count(settings.bootstrap, client.topics.tasks, PARTITIONS) == 2000


def test_a_refused_record_fails_the_call_and_names_what_was_acknowledged(
    broker_kind: str, client: Client, settings: AppSettings
) -> None:
    """The broker refuses one record of a call (the task topic's max.message.bytes is below
    the client's payload limit): SubmitError lists exactly the other tasks as acknowledged."""
    if broker_kind != "kafka":
        pytest.skip("Tansu does not enforce a topic's max.message.bytes")
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    topic = client.topics.tasks
    created = admin.create_topics(
        [NewTopic(topic, PARTITIONS, 1, config={"max.message.bytes": "2000"})]
    )
    created[topic].result(timeout=30)
    # Dealt round robin, the three records go to three partitions: separate batches, so the
    # broker refuses only the big one.
    specs = [TaskSpec("add", [1]), TaskSpec("add", ["x" * 5000]), TaskSpec("add", [3])]
    with pytest.raises(SubmitError, match="refused 1 of 3") as e:
        client.submit_many(specs)
    acked = e.value.acknowledged
    assert len(acked) == 2
    got = read_records(settings.bootstrap, topic, PARTITIONS, 2)
    assert sorted(decode(v).id for *_, v in got) == sorted(h.id for h in acked)
    assert sorted(decode(v).args[0] for *_, v in got) == [1, 3]


def test_status_and_result_through_redis(client: Client, settings: AppSettings) -> None:
    before = client.submit("add", args=[1])
    assert before.status() is Status.PENDING  # acknowledged, nobody reported yet
    with TinyWorker(settings):
        ok = client.submit("add", args=[2, 3, 4])
        assert ok.result(timeout=30) == 9
        assert ok.status() is Status.SUCCEEDED
        assert before.result(timeout=30) == 1
        bad = client.submit("boom")
        with pytest.raises(TaskError, match="ValueError: no good") as e:
            bad.result(timeout=30)
        assert e.value.task_id == bad.id
        assert bad.status() is Status.DEAD_LETTERED
        never = client.submit("unknown-to-tiny-worker")
        t0 = time.monotonic()
        with pytest.raises(ResultTimeout):
            never.result(timeout=0.5)
        assert time.monotonic() - t0 < 5


def test_idempotency_key_gives_the_same_task_id(client: Client, settings: AppSettings) -> None:
    a = client.submit("add", args=[1], idempotency_key="order-17")
    b = client.submit("add", args=[1], idempotency_key="order-17")
    c = client.submit("add", args=[1], idempotency_key="order-18")
    assert a.id == b.id == idempotent_task_id(settings.namespace, "order-17") != c.id
    recs = read_records(settings.bootstrap, client.topics.tasks, PARTITIONS, 3)
    assert sorted(decode(v).idempotency_key or "" for *_, v in recs) == [
        "order-17",
        "order-17",
        "order-18",
    ]
    with TinyWorker(settings):
        assert a.result(timeout=30) == b.result(timeout=30) == 1


def test_unreachable_broker_fails_clearly_within_a_bound(redis_url: str) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bootstrap = f"127.0.0.1:{port}"
    c = Client("nobody", bootstrap, redis_url, connect_timeout=2.0, submit_timeout=3.0)
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=bootstrap):
        c.submit("add", args=[1])
    assert time.monotonic() - t0 < 10
    c.close(timeout=0.1)


def test_committed_batch_is_committed_at_the_gate(client: Client, settings: AppSettings) -> None:
    batch = client.submit_batch([TaskSpec("add", [i]) for i in range(25)])
    assert batch.committed and len(batch) == 25
    recs = read_records(settings.bootstrap, client.topics.tasks, PARTITIONS, 25)
    envs = [decode(v) for *_, v in recs]
    assert {e.batch for e in envs} == {batch.id}
    assert {e.id for e in envs} == {h.id for h in batch}
    clock = [0.0]
    gate = BatchGate(settings, abandon_after=10, clock=lambda: clock[0])
    try:
        _refresh_until(gate, lambda: gate.state(batch.id) is BatchState.COMMITTED)
        assert all(gate.member(batch.id, e.id) for e in envs)
        assert not gate.member(batch.id, "0" * 32)
        # The part is the SHA-256 of the envelope as it went on the task topic.
        committed = gate.book._decided[batch.id].parts
        assert committed == {decode(v).id: part_value(v) for *_, v in recs}
    finally:
        gate.close()


def test_producer_dying_before_commit_leaves_the_batch_abandoned(
    client: Client, settings: AppSettings
) -> None:
    dead = client.batches.submit([TaskSpec("add", [i]) for i in range(5)], commit=False)
    assert not dead.committed and len(dead) == 5  # the tasks themselves were acknowledged
    good = client.submit_batch([TaskSpec("add", [1])])
    clock = [0.0]
    gate = BatchGate(settings, abandon_after=10, clock=lambda: clock[0])
    try:
        # Once the gate has read past the later, committed batch, the dead one is still open.
        _refresh_until(gate, lambda: gate.state(good.id) is BatchState.COMMITTED)
        assert gate.state(dead.id) is BatchState.PENDING
        clock[0] = 9.9
        gate.refresh()
        assert gate.state(dead.id) is BatchState.PENDING
        clock[0] = 10.0
        gate.refresh()
        assert gate.state(dead.id) is BatchState.ABANDONED
        assert not any(gate.member(dead.id, h.id) for h in dead)
    finally:
        gate.close()


def test_gate_thread_keeps_up_with_new_commits(client: Client, settings: AppSettings) -> None:
    client.submit_batch([TaskSpec("add", [0])])  # the topics exist before the gate reads
    gate = BatchGate(settings, abandon_after=60)
    gate.start(interval=0.05)
    try:
        batch = client.submit_batch([TaskSpec("add", [1]), TaskSpec("add", [2])])
        deadline = time.monotonic() + 30
        while gate.state(batch.id) is not BatchState.COMMITTED:
            assert time.monotonic() < deadline, gate.last_error
            time.sleep(0.02)
    finally:
        gate.close()


def _refresh_until(gate: BatchGate, cond: object, timeout: float = 30.0) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while True:
        gate.refresh(now=float("-inf"))  # reads, without advancing the abandonment clock
        if cond():
            return
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
