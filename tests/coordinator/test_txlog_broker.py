"""The 2PC log against real brokers: every test runs on Apache Kafka and on Tansu."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined, unused-ignore]

from ringleader.coordinator.assignment import Assignment, AssignmentLog, AssignmentPointer
from ringleader.coordinator.errors import RingleaderError
from ringleader.coordinator.topics import ensure_topic
from ringleader.coordinator.twophase import Applied, Inconsistent
from ringleader.coordinator.txlog import TxLogError, TxLogReader, TxLogWriter

pytestmark = pytest.mark.broker

TIMEOUT = 30.0


@pytest.fixture
def topic(broker: str, unique_name: str) -> str:
    ensure_topic(broker, unique_name, 1, 1)
    return unique_name


@pytest.fixture
def log(broker: str, topic: str) -> Iterator[AssignmentLog]:
    a = AssignmentLog(broker, topic)
    yield a
    a.close()


def partition_count(broker: str, topic: str) -> int:
    md = AdminClient({"bootstrap.servers": broker}).list_topics(topic=topic, timeout=TIMEOUT)
    t = md.topics[topic]
    assert t.error is None, t.error
    return len(t.partitions)


def test_ensure_topic_is_idempotent(broker: str, unique_name: str) -> None:
    ensure_topic(broker, unique_name, 3, 1)
    assert partition_count(broker, unique_name) == 3
    ensure_topic(broker, unique_name, 3, 1)  # exists: no TOPIC_ALREADY_EXISTS error
    assert partition_count(broker, unique_name) == 3
    # An existing topic is taken as it is, never re-partitioned.
    ensure_topic(broker, unique_name, 5, 1)
    assert partition_count(broker, unique_name) == 3


def test_write_then_read_a_transaction(broker: str, topic: str) -> None:
    w = TxLogWriter(broker, topic, "batch")
    parts = {f"task-{i}": f"payload {i}".encode() for i in range(5)}
    commit_offset = w.write("b1", parts, TIMEOUT)
    assert commit_offset == 5  # parts at 0..4, commit after them
    w.close()
    r = TxLogReader(broker, topic, "batch")
    try:
        out = r.read_until(commit_offset, TIMEOUT)
        assert out == [Applied("b1", parts, commit_offset)]
        assert r.applied("b1") == out[0]
        assert r.outcome_at(commit_offset) == out[0]
        assert r.position == commit_offset + 1
        assert r.read_available(TIMEOUT) == []
    finally:
        r.close()


def test_parts_only_is_never_applied_later_generation_is(
    broker: str, topic: str, log: AssignmentLog
) -> None:
    owners = {"m1": [0, 2], "m2": [1, 3]}
    last_part = log.publish_parts_only(Assignment(4, "m1", owners), TIMEOUT)  # leader dies here
    assert last_part == 1
    # a new leader publishes the next generation
    pointer = log.publish(5, "m2", {"m2": [0, 1, 2, 3]}, TIMEOUT)
    assert pointer == AssignmentPointer(5, 3, "m2")  # parts of 4 at 0-1, part of 5 at 2

    # a member told (wrongly) to look where generation 4 would be finds nothing applied
    assert log.read(AssignmentPointer(4, last_part, "m1"), TIMEOUT) is None
    assert log.last_reason is not None and "no commit" in log.last_reason
    got = log.read(pointer, TIMEOUT)
    assert got == Assignment(5, "m2", {"m2": [0, 1, 2, 3]})
    assert log.reader.applied("4") is None
    assert log.reader.assembler.pending == {"4": 2}

    # a fresh reader from the start sees the same: gen 4 pending, gen 5 applied
    fresh = TxLogReader(broker, topic, "assign")
    try:
        outcomes = fresh.read_until(pointer.commit_offset, TIMEOUT)
        assert [o.txid for o in outcomes if isinstance(o, Applied)] == ["5"]
        assert fresh.expire(pointer.commit_offset) == 1
    finally:
        fresh.close()


def test_commit_with_missing_part_is_inconsistent(broker: str, topic: str) -> None:
    """A commit naming a part the log lacks (e.g. written by a buggy leader) is refused."""
    from confluent_kafka import Producer

    from ringleader.coordinator.twophase import encode_commit

    a = Assignment(3, "m1", {"m1": [0], "m2": [1]})
    parts = a.encode_parts()
    p = Producer({"bootstrap.servers": broker})
    p.produce(topic, key="assign/3/m1", value=parts["m1"], partition=0)
    p.produce(topic, key="commit/3", value=encode_commit("assign", parts), partition=0)
    assert p.flush(TIMEOUT) == 0
    log = AssignmentLog(broker, topic)
    try:
        assert log.read(AssignmentPointer(3, 1, "m1"), TIMEOUT) is None
        assert log.last_reason is not None and "inconsistent" in log.last_reason
        assert isinstance(log.reader.outcome_at(1), Inconsistent)
    finally:
        log.close()


def test_three_writers_interleaved(broker: str, topic: str) -> None:
    """Three leaders (separate producers) publish generations concurrently; every committed
    generation reads back exactly, whatever the interleaving of their records."""
    per_writer = 4
    logs = [AssignmentLog(broker, topic) for _ in range(3)]
    pointers: list[AssignmentPointer] = []
    errors: list[Exception] = []
    lock = threading.Lock()
    start = threading.Barrier(3)

    def owners_for(gen: int) -> dict[str, list[int]]:
        members = [f"g{gen}-m{i}" for i in range(5)]
        return {m: [p for p in range(20) if p % 5 == i] for i, m in enumerate(members)}

    def run(w: int) -> None:
        try:
            start.wait(TIMEOUT)
            for k in range(per_writer):
                gen = 100 * (w + 1) + k
                ptr = logs[w].publish(gen, f"leader-{w}", owners_for(gen), TIMEOUT)
                with lock:
                    pointers.append(ptr)
        except (RingleaderError, ValueError, threading.BrokenBarrierError) as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert not errors, errors
    assert len(pointers) == 3 * per_writer
    reader = AssignmentLog(broker, topic)
    try:
        for ptr in sorted(pointers, key=lambda p: p.commit_offset):
            got = reader.read(ptr, TIMEOUT)
            assert got is not None, reader.last_reason
            assert got.generation == ptr.generation
            assert got.leader == ptr.leader_id
            assert got.owners == owners_for(ptr.generation)
        # every record of the log was a part or commit of these transactions
        assert reader.reader.position == 3 * per_writer * 6
    finally:
        reader.close()
        for lg in logs:
            lg.close()


def test_reader_reads_incrementally_across_calls(broker: str, log: AssignmentLog) -> None:
    p1 = log.publish(1, "a", {"a": [0, 1], "b": []}, TIMEOUT)
    assert log.read(p1, TIMEOUT) == Assignment(1, "a", {"a": [0, 1], "b": []})
    pos = log.reader.position
    p2 = log.publish(2, "b", {"a": [0], "b": [1]}, TIMEOUT)
    assert p2.commit_offset > p1.commit_offset
    got = log.read(p2, TIMEOUT)
    assert got is not None and got.partitions_of("b") == [1]
    assert log.reader.position == p2.commit_offset + 1 > pos
    # reading an older pointer again is answered from memory
    assert log.read(p1, TIMEOUT) == Assignment(1, "a", {"a": [0, 1], "b": []})


def test_pointer_to_wrong_generation_is_refused(log: AssignmentLog) -> None:
    p = log.publish(7, "a", {"a": [0]}, TIMEOUT)
    assert log.read(AssignmentPointer(8, p.commit_offset, "a"), TIMEOUT) is None
    assert log.read(AssignmentPointer(7, p.commit_offset, "b"), TIMEOUT) is None
    assert log.read(p, TIMEOUT) is not None


def test_read_until_past_the_end_times_out(broker: str, topic: str) -> None:
    r = TxLogReader(broker, topic, "assign")
    try:
        with pytest.raises(TxLogError, match="not reached") as ei:
            r.read_until(10, 1.0)
        assert ei.value.retriable
    finally:
        r.close()


def test_fresh_reader_jumps_to_the_pointed_generation(broker: str, topic: str) -> None:
    writer = AssignmentLog(broker, topic)
    old = [writer.publish(g, "a", {"a": [0, 1], "b": [2]}, TIMEOUT) for g in range(1, 4)]
    latest = writer.publish(4, "b", {"a": [2], "b": [0, 1]}, TIMEOUT)
    writer.close()
    fresh = AssignmentLog(broker, topic)
    replay = AssignmentLog(broker, topic, jump=False)
    try:
        assert fresh.read(latest, TIMEOUT) == Assignment(4, "b", {"a": [2], "b": [0, 1]})
        assert fresh.reader.outcome_at(old[-1].commit_offset) is None  # skipped, not read
        assert replay.read(latest, TIMEOUT) == fresh.read(latest, TIMEOUT)
        assert replay.read(old[0], TIMEOUT) is not None  # the replaying reader saw everything
        # asked for a generation before its jump point, the reader goes back for it
        assert fresh.read(old[0], TIMEOUT) == Assignment(1, "a", {"a": [0, 1], "b": [2]})
    finally:
        fresh.close()
        replay.close()
