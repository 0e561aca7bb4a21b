"""Submit rate of `Client` against raw confluent-kafka produce, measured in the same run.

    python benchmarks/bench_submit.py --bootstrap 127.0.0.1:19092 [--tasks 50000]

Figures per broker, each pair waiting for acknowledgements equally often:
* raw produce: a confluent-kafka Producer (acks=all, idempotent, librdkafka's default
  linger) sending msgpack records of the same size as the task envelopes, one flush at
  the end; "spread": each record to partition i % 12, as the Client deals unkeyed tasks
  over the partitions (so that a burst reaches every worker);
* submit_many, one call: `Client.submit_many` of all the tasks (encoded, produced, flushed
  once, every delivery checked), against raw produce spread; the TaskSpecs are built before
  the clock starts;
* raw produce / submit_many in chunks of `--chunk`: a flush (the wait for every ack) after
  each chunk, as a caller submitting bursts does;
* raw produce one by one: produce + flush (until acknowledged), `--single` times;
* submit one by one: `Client.submit` (returns once acknowledged), `--single` times, in blocks
  alternating with the raw ones.
Targets: submit_many at least 0.5x the raw produce rate; submit one by one at least 0.8x raw
produce one by one.
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


def bench_single_pair(
    bootstrap: str, topic: str, client: Client, n: int, size: int, *, blocks: int = 20
) -> tuple[float, float]:
    """(raw produce-and-flush one by one, `Client.submit` one by one) per second: `n` of each,
    in `blocks` alternating blocks so that this machine's drifting speed hits both alike."""
    p = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0}
    )
    pad = b"x" * (size - 16)
    p.produce(topic, b"warm-up")
    p.flush(30)
    raw = one = 0.0
    per_block = max(1, n // blocks)
    for _ in range(blocks):
        t0 = time.perf_counter()
        for i in range(per_block):
            p.produce(topic, msgpack.packb({"i": i, "pad": pad}))
            assert p.flush(30) == 0  # returns once the record is acknowledged
        t1 = time.perf_counter()
        for _ in range(per_block):
            client.submit("bench.noop", [1, "two", 3.0], {"k": "v"})
        t2 = time.perf_counter()
        raw += t1 - t0
        one += t2 - t1
    done = per_block * blocks
    return done / raw, done / one


def bench_submit_many(client: Client, n: int, chunk: int) -> float:
    """The caller's specs exist before the clock starts (as raw produce's loop counter does):
    what is timed is ringleader's work, packing to the end of the last flush, as raw produce
    times its msgpack encoding to its flush."""
    client.submit("bench.noop")  # warm-up: topic metadata, connections
    calls = [
        [TaskSpec("bench.noop", [1, "two", 3.0], {"k": "v"}) for _ in range(min(chunk, n - i))]
        for i in range(0, n, chunk)
    ]
    t0 = time.perf_counter()
    for specs in calls:
        client.submit_many(specs)
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
                raw_1, one = bench_single_pair(bootstrap, topic, client, args.single, size)
                got["raw 1"].append(raw_1)
                got["one"].append(one)
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
            if base is not None:
                want = 0.8 if key == "one" else 0.5
                ok = "met" if b[key] >= want * b[base] else "NOT met"
                print(f"  target {label} >= {want} x {rows_label(rows, base)}: {ok}")


def rows_label(rows: list[tuple[str, str, str | None]], key: str) -> str:
    return next(label for label, k, _ in rows if k == key)


def _all(xs: list[float]) -> str:
    return "[" + " ".join(f"{x / 1000:.1f}k" for x in xs) + "]"


if __name__ == "__main__":
    main()
