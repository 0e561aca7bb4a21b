"""Submit rate of `Client` against raw confluent-kafka produce, measured in the same run.

    python benchmarks/bench_submit.py --bootstrap 127.0.0.1:19092 [--tasks 50000]

Four figures per broker:
* raw produce: a confluent-kafka Producer (acks=all, idempotent, librdkafka's default
  linger) sending msgpack records of the same size as the task envelopes, one flush at
  the end;
* raw produce, spread: the same, each record to partition i % 12, as the Client deals
  unkeyed tasks over the partitions (so that a burst reaches every worker);
* submit_many: `Client.submit_many` in chunks of `--chunk` tasks (each chunk is encoded,
  produced, flushed once, every delivery checked);
* raw produce one by one: produce + flush (until acknowledged), `--single` times;
* submit one by one: `Client.submit` (returns once acknowledged), `--single` times.
Target: submit_many at least half the raw produce rate.
"""

from __future__ import annotations

import argparse
import time
import uuid

import msgpack
from confluent_kafka import Producer

from worker.client import Client, TaskSpec
from worker.envelope import Envelope, encode, new_task_id
from worker.namespace import ensure_topics
from worker.settings import AppSettings


def sample_envelope_size() -> int:
    env = Envelope(new_task_id(), "bench.noop", [1, "two", 3.0], {"k": "v"}, submitted_at=1.0)
    return len(encode(env))


def bench_raw(bootstrap: str, topic: str, n: int, size: int, spread: int = 0) -> float:
    """`spread` > 0: each record to partition i % spread, as the Client deals unkeyed tasks;
    0: librdkafka's sticky partitioner (a burst goes to one partition)."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    pad = b"x" * (size - 16)
    p.produce(topic, b"warm-up")
    p.flush(30)
    t0 = time.perf_counter()
    for i in range(n):
        value = msgpack.packb({"i": i, "pad": pad})
        while True:
            try:
                if spread:
                    p.produce(topic, value, None, i % spread)
                else:
                    p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(120) == 0
    return n / (time.perf_counter() - t0)


def bench_raw_single(bootstrap: str, topic: str, n: int, size: int) -> float:
    p = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0}
    )
    pad = b"x" * (size - 16)
    p.produce(topic, b"warm-up")
    p.flush(30)
    t0 = time.perf_counter()
    for i in range(n):
        p.produce(topic, msgpack.packb({"i": i, "pad": pad}))
        assert p.flush(30) == 0  # returns once the record is acknowledged
    return n / (time.perf_counter() - t0)


def bench_submit_many(client: Client, n: int, chunk: int) -> float:
    client.submit("bench.noop")  # warm-up: topic metadata, connections
    t0 = time.perf_counter()
    left = n
    while left:
        k = min(chunk, left)
        specs = [TaskSpec("bench.noop", [1, "two", 3.0], {"k": "v"}) for _ in range(k)]
        client.submit_many(specs)
        left -= k
    return n / (time.perf_counter() - t0)


def bench_submit_single(client: Client, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        client.submit("bench.noop", [1, "two", 3.0], {"k": "v"})
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bootstrap", action="append", required=True, help="repeat for brokers")
    ap.add_argument("--redis", default="redis://127.0.0.1:16379/0")
    ap.add_argument("--tasks", type=int, default=50_000)
    ap.add_argument("--chunk", type=int, default=5_000)
    ap.add_argument("--single", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    size = sample_envelope_size()
    print(f"envelope size {size} B; {args.tasks} tasks bulk, {args.single} one by one")
    for bootstrap in args.bootstrap:
        ns = f"bench-submit-{uuid.uuid4().hex[:8]}"
        settings = AppSettings(namespace=ns, bootstrap=bootstrap, redis=args.redis, partitions=12)
        ensure_topics(settings)
        topic = f"{ns}.tasks"  # raw records go to the same topic and partitions
        # Interleaved rounds, best of each: this machine's speed swings between runs.
        raw, spread, many, raw1, one = [], [], [], [], []
        with Client(settings=settings) as client:
            for _ in range(args.rounds):
                raw.append(bench_raw(bootstrap, topic, args.tasks, size))
                spread.append(bench_raw(bootstrap, topic, args.tasks, size, spread=12))
                many.append(bench_submit_many(client, args.tasks, args.chunk))
                raw1.append(bench_raw_single(bootstrap, topic, args.single, size))
                one.append(bench_submit_single(client, args.single))
        r, rs, m, r1, o = max(raw), max(spread), max(many), max(raw1), max(one)
        print(f"\n{bootstrap} (best of {args.rounds} interleaved rounds)")
        print(f"  raw produce            {r:>10,.0f} records/s   {_all(raw)}")
        print(f"  raw produce, spread    {rs:>10,.0f} records/s   {_all(spread)}")
        print(
            f"  submit_many            {m:>10,.0f} tasks/s     {_all(many)}  "
            f"({m / r:.2f} x raw, {m / rs:.2f} x raw spread)"
        )
        print(f"  raw produce, 1 by 1    {r1:>10,.0f} records/s   {_all(raw1)}")
        print(f"  submit, 1 by 1         {o:>10,.0f} tasks/s     {_all(one)}  ({o / r1:.2f} x raw)")
        print(f"  target submit_many >= 0.5 x raw: {'met' if m >= 0.5 * r else 'NOT met'}")


def _all(xs: list[float]) -> str:
    return "[" + " ".join(f"{x / 1000:.1f}k" for x in xs) + "]"


if __name__ == "__main__":
    main()
