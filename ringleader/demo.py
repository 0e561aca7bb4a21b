"""`ringleader demo`: the main job on the embedded default (Tansu + Valkey).

Until the dispatcher runs end to end, the demo brings up the embedded services and pushes
a smoke workload of msgpack records through the broker, printing what happened.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import msgpack
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from ringleader.local import services


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the main job on the embedded Tansu + Valkey")
    p.add_argument("--records", type=int, default=10_000)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ringleader-demo-") as tmp:
        t0 = time.monotonic()
        stack = services.up(Path(tmp), tansu=True, valkey=True)
        print(f"embedded services up in {time.monotonic() - t0:.2f}s: "
              f"bootstrap={stack.bootstrap} redis={stack.redis}")  # fmt: skip
        try:
            assert stack.bootstrap is not None and stack.redis is not None
            _smoke(stack.bootstrap, stack.redis, args.records)
        finally:
            services.down(Path(tmp))
            print("embedded services stopped")
    return 0


def _smoke(bootstrap: str, redis_url: str, n: int) -> None:
    topic = "demo.smoke"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # keep a reference: futures need it
    futures = admin.create_topics([NewTopic(topic, 3, 1)])
    for f in futures.values():
        f.result(timeout=30)
    t0 = time.monotonic()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        producer.produce(topic, msgpack.packb({"i": i}))
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(60)
    produced = time.monotonic() - t0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "demo"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while len(seen) < n and time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=1.0):
            if msg.error() is None:
                seen.add(msgpack.unpackb(msg.value())["i"])
    consumer.close()
    total = time.monotonic() - t0
    redis.Redis.from_url(redis_url).set("demo:seen", len(seen))
    print(f"produced {n} records in {produced:.2f}s; consumed {len(seen)} distinct "
          f"in {total:.2f}s total; {'OK' if len(seen) == n else 'MISSING RECORDS'}")  # fmt: skip
