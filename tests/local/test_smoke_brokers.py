"""Smoke: real brokers move real records; a three-node cluster survives a node's death."""

from __future__ import annotations

import threading
import time
from typing import Any

import msgpack
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ringleader.local import services
from ringleader.local.procs import alive

pytestmark = pytest.mark.broker


def create_topic(bootstrap: str, topic: str, partitions: int, rf: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, rf)], operation_timeout=30)
    for f in futures.values():
        f.result(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} did not appear")


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 120) -> list[Any]:
    # assign(), not subscribe(): Tansu holds every JoinGroup for half the session timeout.
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False}
    )
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, err
                    continue
                out.append(msgpack.unpackb(msg.value()))
    finally:
        consumer.close()
    return out


def test_ten_thousand_msgpack_records_round_trip(broker: str, unique_name: str) -> None:
    create_topic(broker, unique_name, partitions=3)
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 5, "acks": "all"})
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    for i in range(10_000):
        record = {"i": i, "name": "smoke", "args": [i, str(i)], "kwargs": {"k": i % 7}}
        producer.produce(unique_name, msgpack.packb(record), key=str(i), on_delivery=on_delivery)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []

    got = consume_all(broker, unique_name, 10_000)
    assert sorted(r["i"] for r in got) == list(range(10_000))
    assert all(r["args"] == [r["i"], str(r["i"])] for r in got)


@pytest.mark.cluster
def test_acks_all_survives_killing_one_of_three_nodes(
    kafka_cluster: services.Stack, unique_name: str
) -> None:
    bootstrap = kafka_cluster.bootstrap
    assert bootstrap is not None
    create_topic(bootstrap, unique_name, partitions=3, rf=3)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60_000,
        }
    )
    acked: set[int] = set()
    failed: list[str] = []
    lock = threading.Lock()

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        with lock:
            if err is None:
                acked.add(msgpack.unpackb(msg.value())["i"])
            else:
                failed.append(str(err))

    def produce_range(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            producer.produce(unique_name, msgpack.packb({"i": i}), on_delivery=on_delivery)
            producer.poll(0)
        producer.flush(90)

    produce_range(0, 2000)
    victim = kafka_cluster.nodes[-1]
    services.stop_service(kafka_cluster, victim.name, kill=True)
    assert not alive(victim.pid)
    try:
        produce_range(2000, 4000)
        with lock:
            assert failed == []
            assert len(acked) == 4000  # production continued with one node gone
        got = consume_all(bootstrap, unique_name, len(acked))
        assert {r["i"] for r in got} >= acked  # nothing acknowledged is lost
    finally:
        services.restart_kafka_node(kafka_cluster, victim.node_id or 0)


@pytest.mark.redis
def test_redis_answers(redis_url: str, unique_name: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.set(unique_name, b"ok", ex=30)
    assert r.get(unique_name) == b"ok"
