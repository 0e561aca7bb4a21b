"""Dispatch throughput and latency with worker OS processes (prints figures, asserts nothing).

1. Raw baseline: one confluent-kafka consumer reads N no-op envelopes from a P-partition topic
   (assign(), no group) — the rate a Kafka client alone reaches on this machine.
2. End to end: N no-op tasks submitted (Client.submit_many) as a backlog, then 2 worker
   processes start; rate = N / (last `succeeded` event - first `started` event), and the wall
   time from the workers' launch until every offset is committed.
3. Submit-to-start latency at a paced 1,000 tasks/s (`started` event time - submitted_at).
4. Round trip: 500 sequential `client.submit("noop").result()`; p50/p99.

    RINGLEADER_TEST_KAFKA=127.0.0.1:19092 RINGLEADER_TEST_REDIS=redis://127.0.0.1:16379/0 \\
        .venv/bin/python benchmarks/bench_dispatch.py [--tasks 100000] [--broker tansu]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ringleader.client import Client, TaskSpec  # noqa: E402
from ringleader.coordinator.topics import ensure_topic  # noqa: E402
from ringleader.coordinator.wire import GroupClient  # noqa: E402
from ringleader.worker import run  # noqa: E402
from ringleader.worker.envelope import Envelope, EventKind, decode_event, encode, new_task_id  # noqa: E402
from ringleader.worker.namespace import ensure_topics  # noqa: E402
from ringleader.worker.settings import AppSettings  # noqa: E402

APP = "tests.worker.apps.counting:app"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def raw_consume(bootstrap: str, n: int, partitions: int) -> float:
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, partitions)
    value = encode(Envelope(id=new_task_id(), name="noop", submitted_at=time.time()))
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=value, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    c.assign([TopicPartition(topic, q, 0) for q in range(partitions)])
    got = 0
    t0 = time.perf_counter()
    while got < n:
        got += sum(1 for m in c.consume(num_messages=500, timeout=1.0) if m.error() is None)
    dt = time.perf_counter() - t0
    c.close()
    return n / dt


@dataclass(frozen=True)
class Knobs:
    """What the workers of one measurement are given (None: the workers' default)."""

    record_window: int | None = None
    crash_limit: int | None = None

    def label(self) -> str:
        window = self.record_window if self.record_window is not None else "default"
        quarantine = "off" if self.crash_limit == 0 else "on"
        return f"record window {window}, crash quarantine {quarantine}"


def worker_env(s: AppSettings, knobs: Knobs) -> dict[str, str]:
    env = run.worker_env(s)
    env.update({"RINGLEADER_SESSION_TIMEOUT_MS": "10000", "PYTHONPATH": str(ROOT)})
    if knobs.record_window is not None:
        env["RINGLEADER_WORKER_RECORD_WINDOW"] = str(knobs.record_window)
    if knobs.crash_limit is not None:
        env["RINGLEADER_CRASH_LIMIT"] = str(knobs.crash_limit)
    return env


def start_workers(
    s: AppSettings, count: int, concurrency: int, log_dir: Path, knobs: Knobs
) -> list[Any]:
    out = []
    for i in range(count):
        fh = open(log_dir / f"w{i}.log", "wb")  # noqa: SIM115 - owned by the child
        out.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "ringleader.worker.run", APP, "--id", f"w{i}"),
                    *("--concurrency", str(concurrency), "--log-level", "INFO"),
                ],
                cwd=ROOT,
                env=worker_env(s, knobs),
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        )
        fh.close()
    return out


def stop_workers(procs: list[Any]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


def committed_total(s: AppSettings) -> int:
    c = GroupClient(s.bootstrap, f"{s.namespace}.workers")
    try:
        c.find_coordinator(5)
        got = c.fetch_offsets(
            topic=f"{s.namespace}.tasks", partitions=list(range(s.partitions)), timeout=5
        )
        return sum(max(0, po.offset) for po in got.values())
    finally:
        c.close()


def wait_committed(s: AppSettings, total: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if committed_total(s) >= total:
                return time.monotonic()
        except Exception:  # noqa: BLE001 - coordinator not there yet; the deadline bounds it
            pass
        time.sleep(0.2)
    raise TimeoutError(f"not all {total} offsets committed within {timeout}s")


def read_events(bootstrap: str, topic: str) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[Any] = []
    n = 0
    deadline = time.monotonic() + 120
    while n < high and time.monotonic() < deadline:
        for m in c.consume(num_messages=5000, timeout=1.0):
            if m.error() is None:
                n += 1
                out.append(decode_event(m.value() or b""))
    c.close()
    return out


def end_to_end(s: AppSettings, n: int, concurrency: int, log_dir: Path, knobs: Knobs) -> None:
    ensure_topics(s)
    with Client(settings=s) as client:
        t0 = time.perf_counter()
        for i in range(0, n, 10_000):
            client.submit_many([TaskSpec("noop")] * min(10_000, n - i))
        submit_rate = n / (time.perf_counter() - t0)
    print(f"  backlog submitted: {n} tasks at {submit_rate:,.0f}/s (Client.submit_many)")
    launched = time.monotonic()
    procs = start_workers(s, 2, concurrency, log_dir, knobs)
    try:
        done = wait_committed(s, n, 600)
    finally:
        stop_workers(procs)
    events = read_events(s.bootstrap, f"{s.namespace}.events")
    started = [e.at for e in events if e.kind is EventKind.STARTED]
    succeeded = [e.at for e in events if e.kind is EventKind.SUCCEEDED]
    span = max(succeeded) - min(started)
    print(
        f"  end to end, 2 worker processes x {concurrency} threads, {knobs.label()}: "
        f"{len(succeeded) / span:,.0f} tasks/s ({len(succeeded)} succeeded in {span:.2f}s "
        f"from first start to last completion); launch-to-all-committed {done - launched:.1f}s"
    )


def latency(s: AppSettings, concurrency: int, log_dir: Path, knobs: Knobs) -> None:
    ensure_topics(s)
    procs = start_workers(s, 2, concurrency, log_dir, knobs)
    try:
        with Client(settings=s) as client:
            # Warm up until a task round-trips (workers joined and assigned).
            deadline = time.monotonic() + 120
            while True:
                try:
                    client.submit("noop").result(timeout=5)
                    break
                except Exception:  # not ready yet
                    if time.monotonic() > deadline:
                        raise
            # Paced submissions at 1,000/s for 5 s (in a thread so submit latency adds nothing).
            ids: list[str] = []
            rate, seconds = 1000, 5
            t0 = time.monotonic()
            for i in range(rate * seconds):
                target = t0 + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                specs = [TaskSpec("noop")]
                ids.extend(h.id for h in client.submit_many(specs))
            achieved = len(ids) / (time.monotonic() - t0)
            client.result(ids[-1], timeout=60)
            time.sleep(1.0)
            want = set(ids)
            events = read_events(s.bootstrap, f"{s.namespace}.events")
            start_at: dict[str, float] = {}
            for e in events:
                if e.task_id in want and e.kind is EventKind.STARTED:
                    start_at.setdefault(e.task_id, e.at)
            # submitted_at is stamped by the client; read it back from the task topic.
            submitted = read_submitted(s, want)
            lat = [(start_at[t] - submitted[t]) * 1000 for t in want if t in start_at]
            print(
                f"  submit-to-start at {achieved:,.0f} submits/s (one submit call each): "
                f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms over {len(lat)} tasks"
            )
            rtt = []
            for _ in range(500):
                t = time.perf_counter()
                client.submit("noop").result(timeout=30)
                rtt.append((time.perf_counter() - t) * 1000)
            print(
                f"  round trip submit -> result(), 500 sequential: p50 {pct(rtt, 50):.2f} ms, "
                f"p99 {pct(rtt, 99):.2f} ms, mean {statistics.fmean(rtt):.2f} ms"
            )
    finally:
        stop_workers(procs)


def read_submitted(s: AppSettings, want: set[str]) -> dict[str, float]:
    from ringleader.worker.envelope import decode

    c = Consumer({"bootstrap.servers": s.bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
    tps = [TopicPartition(f"{s.namespace}.tasks", p) for p in range(s.partitions)]
    highs = [c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps]
    c.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in tps])
    total, n, out = sum(highs), 0, {}
    deadline = time.monotonic() + 120
    while n < total and time.monotonic() < deadline:
        for m in c.consume(num_messages=5000, timeout=1.0):
            if m.error() is None:
                n += 1
                env = decode(m.value() or b"")
                if env.id in want:
                    out[env.id] = env.submitted_at
    c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--record-window", type=int, help="RINGLEADER_WORKER_RECORD_WINDOW")
    args = ap.parse_args()
    env_key = "RINGLEADER_TEST_KAFKA" if args.broker == "kafka" else "RINGLEADER_TEST_TANSU"
    bootstrap = os.environ.get(env_key, "127.0.0.1:19092")
    redis_url = os.environ.get("RINGLEADER_TEST_REDIS", "redis://127.0.0.1:16379/0")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    print(f"bench_dispatch on {args.broker} ({bootstrap}), logs in {log_dir}")
    rate = raw_consume(bootstrap, args.tasks, args.partitions)
    print(
        f"  raw confluent-kafka consume (1 consumer, {args.partitions} partitions): {rate:,.0f}/s"
    )

    def settings(tag: str) -> AppSettings:
        return AppSettings(
            namespace=f"bench-{tag}-{uuid.uuid4().hex[:6]}",
            bootstrap=bootstrap,
            redis=redis_url,
            partitions=args.partitions,
        )

    knobs = Knobs(record_window=args.record_window)
    end_to_end(settings("e2e"), args.tasks, args.concurrency, log_dir, knobs)
    # The same with no start record before each run: what crash quarantine costs.
    off = Knobs(record_window=args.record_window, crash_limit=0)
    end_to_end(settings("e2e-off"), args.tasks, args.concurrency, log_dir, off)
    if not args.skip_latency:
        latency(settings("lat"), args.concurrency, log_dir, knobs)


if __name__ == "__main__":
    main()
