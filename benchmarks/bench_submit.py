"""Submit rate of `Client` against raw confluent-kafka produce, measured in the same run.

    python benchmarks/bench_submit.py --bootstrap 127.0.0.1:19092 [--tasks 50000]

Figures per broker, each pair waiting for acknowledgements equally often:
* raw produce: a confluent-kafka Producer (acks=all, idempotent, librdkafka's default
  linger) sending msgpack records of the same size as the task envelopes, one flush at
  the end; "spread": each record to partition i % 12, as the Client deals unkeyed tasks
  over the partitions (so that a burst reaches every worker);
* submit_many, one call: `Client.submit_many` of all the tasks (encoded, produced, flushed
  once, every delivery checked), against raw produce spread;
* raw produce / submit_many in chunks of `--chunk`: a flush (the wait for every ack) after
  each chunk, as a caller submitting bursts does;
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

from ringleader.client import Client, TaskSpec
from ringleader.worker.envelope import Envelope, encode, new_task_id
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings


def sample_envelope_size() -> int:
    env = Envelope(new_task_id(), "bench.noop", [1, "two", 3.0], {"k": "v"}, submitted_at=1.0)
    return len(encode(env))


def bench_raw(
    bootstrap: str, topic: str, n: int, size: int, *, spread: int = 0, chunk: int | None = None
) -> float:
    """`spread` > 0: each record to partition i % spread, as the Client deals unkeyed tasks;
    0: librdkafka's sticky partitioner (a burst goes to one partition). `chunk`: flush after
    every `chunk` records (else once at the end)."""
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
        if chunk is not None and (i + 1) % chunk == 0:
            assert p.flush(120) == 0
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
        names = ["raw", "spread", "many", "raw chunks", "many chunks", "raw 1", "one"]
        got: dict[str, list[float]] = {k: [] for k in names}
        n, c = args.tasks, args.chunk
        with Client(settings=settings) as client:
            for _ in range(args.rounds):
                got["raw"].append(bench_raw(bootstrap, topic, n, size))
                got["spread"].append(bench_raw(bootstrap, topic, n, size, spread=12))
                got["many"].append(bench_submit_many(client, n, n))
                got["raw chunks"].append(bench_raw(bootstrap, topic, n, size, spread=12, chunk=c))
                got["many chunks"].append(bench_submit_many(client, n, c))
                got["raw 1"].append(bench_raw_single(bootstrap, topic, args.single, size))
                got["one"].append(bench_submit_single(client, args.single))
        b = {k: max(v) for k, v in got.items()}
        print(f"\n{bootstrap} (best of {args.rounds} interleaved rounds)")
        rows = [
            ("raw produce, 1 flush", "raw", None),
            ("raw produce, spread", "spread", None),
            (f"submit_many, 1 call of {n}", "many", "spread"),
            (f"raw spread, flush per {c}", "raw chunks", None),
            (f"submit_many, calls of {c}", "many chunks", "raw chunks"),
            ("raw produce, 1 by 1", "raw 1", None),
            ("submit, 1 by 1", "one", "raw 1"),
        ]
        for label, key, base in rows:
            ratio = f"  {b[key] / b[base]:.2f} x {rows_label(rows, base)}" if base else ""
            print(f"  {label:<30} {b[key]:>10,.0f}/s  {_all(got[key])}{ratio}")
        for label, key, base in rows:
            if base is not None and key != "one":
                ok = "met" if b[key] >= 0.5 * b[base] else "NOT met"
                print(f"  target {label} >= 0.5 x {rows_label(rows, base)}: {ok}")


def rows_label(rows: list[tuple[str, str, str | None]], key: str) -> str:
    return next(label for label, k, _ in rows if k == key)


def _all(xs: list[float]) -> str:
    return "[" + " ".join(f"{x / 1000:.1f}k" for x in xs) + "]"


if __name__ == "__main__":
    main()
