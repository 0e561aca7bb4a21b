"""The workers' lag read the way autoscalers and lag exporters read it, with no ringleader code:
the group's committed offsets through the admin API (OffsetFetch) against the topic's end
offsets (ListOffsets), on Apache Kafka. Two standard clients: librdkafka's AdminClient
(confluent-kafka's `list_consumer_group_offsets`, as Python and Go exporters use it) during
a dispatch, and Kafka's own Java Admin (`listConsumerGroupOffsets`) once it drained.

Kafka's `describe_consumer_groups` (and so `kafka-consumer-groups.sh --describe`) refuses the
group, whose protocol type is "ringleader", not "consumer": the test pins that too, so README's
list of which tools see the lag stays true."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from ringleader.client import Client, TaskSpec
from ringleader.local.kafka import fetch_jars
from tests.worker import procs

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 4
TASKS = 2000
JAVA_PROBE = Path(__file__).parent / "tools" / "GroupOffsets.java"


def admin_lag(admin: AdminClient, group: str, topic: str) -> tuple[int, int, int]:
    """(lag, committed sum, end sum) over the topic's partitions, by the admin API alone."""
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    request = [ConsumerGroupTopicPartitions(group, tps)]
    listed = admin.list_consumer_group_offsets(request)[group].result(timeout=10)
    committed = {tp.partition: tp.offset for tp in listed.topic_partitions}
    ends_f = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps})
    ends = {tp.partition: f.result(timeout=10).offset for tp, f in ends_f.items()}
    # A partition never committed (offset < 0) lags by everything in it, as KEDA counts
    # it with offsetResetPolicy=earliest.
    lag = sum(ends[p] - max(committed.get(p, -1), 0) for p in ends)
    return lag, sum(max(c, 0) for c in committed.values()), sum(ends.values())


def test_admin_api_sees_the_lag_fall_to_zero(
    kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    settings = procs.namespace(kafka_bootstrap, redis_url, unique_name, partitions=PARTITIONS)
    group, topic = f"{settings.namespace}.workers", f"{settings.namespace}.tasks"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, "log_level": 2})
    with procs.workers_of(settings, tmp_path) as ws, Client(settings=settings) as client:
        ws.start("w1", concurrency=4)
        assert client.submit("count", kwargs={"n": -1}).result(timeout=120) == -1  # up
        procs.wait_until(lambda: admin_lag(admin, group, topic)[0] == 0, 60, "the warm-up lag 0")

        # ~5 ms a task on 4 threads: the drain takes seconds, so samples catch it midway.
        handles = client.submit_many(
            [TaskSpec("count", kwargs={"n": i, "sleep": 0.005}) for i in range(TASKS)]
        )
        samples: list[int] = []
        deadline = time.monotonic() + 180
        while True:
            lag, committed, end = admin_lag(admin, group, topic)
            samples.append(lag)
            if lag == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # a sampling interval, not a wait for a condition
        print("lag samples", samples)
        assert samples[-1] == 0, f"lag never reached 0: {samples}"
        assert max(samples) > 0, f"the dispatch was never seen lagging: {samples}"
        assert end == committed == TASKS + 1
        for h in handles[:: TASKS // 20]:
            assert h.result(timeout=30) is not None

        with pytest.raises(KafkaException, match="is not a consumer group"):
            admin.describe_consumer_groups([group])[group].result(timeout=10)

    java = shutil.which("java")
    assert java is not None, "java runs the brokers; it must be on PATH"
    out = subprocess.run(
        [java, "-cp", f"{fetch_jars()}/*", str(JAVA_PROBE), kafka_bootstrap, group, topic],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    rows = {int(p): (int(c), int(e)) for p, c, e in (line.split() for line in out.splitlines())}
    assert sorted(rows) == list(range(PARTITIONS)), out
    assert all(c == e for c, e in rows.values()), f"the Java Admin sees lag: {out}"
    assert sum(e for _, e in rows.values()) == TASKS + 1
