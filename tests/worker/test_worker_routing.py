from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from ringleader.worker.routing import MAX_NAMESPACE_LEN, murmur2, partition_for, topics


def test_topic_names() -> None:
    t = topics("prod")
    assert (t.tasks, t.assignments, t.dead_letter, t.events, t.batches) == (
        "prod.tasks",
        "prod.assignments",
        "prod.dead-letter",
        "prod.events",
        "prod.batches",
    )
    assert len(t.all()) == 7
    assert max(len(x) for x in topics("n" * MAX_NAMESPACE_LEN).all()) == 249


# Vectors from Apache Kafka's UtilsTest.testMurmur2.
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@given(st.binary(max_size=64))
def test_murmur2_matches_kafka_python(data: bytes) -> None:
    assert murmur2(data) & 0xFFFFFFFF == kafka_python_murmur2(data) & 0xFFFFFFFF


@given(st.text(max_size=30), st.integers(1, 500))
def test_partition_stable_and_in_range(key: str, n: int) -> None:
    p = partition_for(key, n)
    assert p is not None and 0 <= p < n
    assert p == partition_for(key.encode(), n)


def test_partition_known_value_and_no_key() -> None:
    # Java: Utils.toPositive(Utils.murmur2("21".getBytes())) % 12
    assert partition_for("21", 12) == (-973932308 & 0x7FFFFFFF) % 12
    assert partition_for(None, 12) is None
    with pytest.raises(ValueError, match="partitions"):
        partition_for("k", 0)


def test_keys_spread_over_partitions() -> None:
    hits = {partition_for(f"key-{i}", 12) for i in range(500)}
    assert hits == set(range(12))
