"""Dispatch throughput and latency with worker OS processes (prints figures, asserts nothing).

1. Raw baseline: one confluent-kafka consumer reads N no-op envelopes from a P-partition topic
   (assign(), no group) — the rate a Kafka client alone reaches on this machine. The clock
   starts once the consumer holds its connection to the partition leader (watermarks read), so
   the TLS handshake and SASL exchange are not in the rate; their time is printed as "connect".
2. End to end: N no-op tasks submitted (Client.submit_many) as a backlog, then 2 worker
   processes start; rate = N / (last `succeeded` event - first `started` event), and the wall
   time from the workers' launch until every offset is committed. Run twice: with crash
   quarantine (start records) on and off.
3. Submit-to-start latency at a paced 1,000 tasks/s (`started` event time - submitted_at).
4. Round trip: 500 sequential `client.submit("noop").result()`; p50/p99/max.
5. With `--metrics`: step 2 once more with each worker serving Prometheus `/metrics`
   (RINGLEADER_METRICS_PORT, a port each) and scraped every `--scrape-every` seconds (1 s:
   15-60x more often than Prometheus' usual interval) during the drain; the summary prints
   e2e with metrics / e2e without, in the same trial; the same for crash quarantine off.

    RINGLEADER_TEST_KAFKA=127.0.0.1:19092 RINGLEADER_TEST_REDIS=redis://127.0.0.1:16379/0 \\
        .venv/bin/python benchmarks/bench_dispatch.py [--tasks 100000] [--broker tansu]

The cost of TLS and SASL (`--secure STACK`): the same run measures every step twice, on the
PLAINTEXT broker and Redis above and on a secured stack, interleaved step by step (raw
PLAINTEXT, raw secure, end to end PLAINTEXT, end to end secure, ...; with `--trials K` the
whole sequence K times), then prints one table with a row per cluster (median over the
trials) and the ratio secure / PLAINTEXT: raw consume rate and the raw consumer's connect
time, Client.submit_many rate, end-to-end tasks/s (quarantine on and off), round trip
p50/p99/max. STACK is the JSON that `ringleader local up --kafka --redis --secure --json`
prints, saved to a file, or that command's `--dir` (its `secrets.json` holds the same
JSON). The secure row uses the stack's main listener (`bootstrap`, e.g. SASL_SSL with
SCRAM-SHA-512) and its TLS Redis URL (`redis`, an ACL user limited to `ringleader:*` keys);
every client of the benchmark (the raw confluent-kafka producer and consumers, topic
creation, GroupClient, Client, and the worker processes through `AppSettings.to_env()`)
gets the stack's `KafkaSecurity`.

    .venv/bin/ringleader local up --kafka --redis --secure --dir /tmp/rl-sec --json \\
        > /tmp/sec.json
    RINGLEADER_TEST_KAFKA=... RINGLEADER_TEST_REDIS=... .venv/bin/python \\
        benchmarks/bench_dispatch.py --tasks 20000 --secure /tmp/sec.json [--trials 2]

Rates in the table are per second (ratio below 1: the secured cluster is slower); latencies
are in ms (ratio above 1: slower). Both clusters run on the same machine, so the ratio shows
what TLS and SASL cost the clients and brokers in CPU, not in network round trips.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ringleader.client import Client, TaskSpec  # noqa: E402
from ringleader.coordinator.topics import ensure_topic  # noqa: E402
from ringleader.coordinator.wire import GroupClient  # noqa: E402
from ringleader.errors import BrokerAuthError, ConfigError, RedisAuthError  # noqa: E402
from ringleader.local.procs import free_port  # noqa: E402
from ringleader.redisurl import redact  # noqa: E402
from ringleader.security import KafkaSecurity  # noqa: E402
from ringleader.worker import run  # noqa: E402
from ringleader.worker.envelope import Envelope, EventKind, decode_event, encode, new_task_id  # noqa: E402
from ringleader.worker.namespace import ensure_topics  # noqa: E402
from ringleader.worker.settings import AppSettings  # noqa: E402

APP = "tests.worker.apps.counting:app"
# Where `ringleader local up --secure --dir D` keeps what its --json printed (D/secrets.json,
# ringleader.local.secure.SECRETS).
STACK_SECRETS = "secrets.json"
ROUND_TRIPS = 500
# Refusals: retrying cannot help, so a measurement stops at once instead of at its deadline.
REFUSED = (BrokerAuthError, RedisAuthError, ConfigError)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


@dataclass(frozen=True)
class Target:
    """One cluster to measure: a Kafka bootstrap with its security settings, and Redis."""

    label: str
    bootstrap: str
    redis: str
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def kafka_config(self) -> dict[str, str]:
        """bootstrap.servers plus the security keys, for a raw confluent-kafka client."""
        return {"bootstrap.servers": self.bootstrap, **self.security.librdkafka_config()}

    def settings(self, tag: str, partitions: int) -> AppSettings:
        return AppSettings(
            namespace=f"bench-{tag}-{uuid.uuid4().hex[:6]}",
            bootstrap=self.bootstrap,
            redis=self.redis,
            partitions=partitions,
            security=self.security,
        )

    def describe(self) -> str:
        """For the header: never a password."""
        return (
            f"{self.label}: Kafka {self.bootstrap} ({self.security.describe()}), "
            f"Redis {redact(self.redis)}"
        )


def load_stack(path: Path) -> Target:
    """The secured stack's main listener and Redis, from its `--json` output or its --dir."""
    file = path / STACK_SECRETS if path.is_dir() else path
    if not file.is_file():
        raise SystemExit(
            f"--secure {path}: {file} not found (pass the JSON `ringleader local up --secure "
            f"--json` printed, or that stack's --dir, which holds {STACK_SECRETS})"
        )
    conn = json.loads(file.read_text())
    missing = [k for k in ("bootstrap", "redis", "security_protocol") if not conn.get(k)]
    if missing:
        raise SystemExit(f"--secure {file}: no {', '.join(missing)} (not a secured stack?)")
    security = KafkaSecurity.from_mapping(conn)
    label = " ".join(filter(None, (security.security_protocol, security.sasl_mechanism)))
    return Target(label, conn["bootstrap"], conn["redis"], security)


def raw_consume(t: Target, n: int, partitions: int) -> tuple[float, float]:
    """(messages/s, seconds from the consumer's creation to its first watermark answer)."""
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    ensure_topic(t.bootstrap, topic, partitions, security=t.security)
    value = encode(Envelope(id=new_task_id(), name="noop", submitted_at=time.time()))
    p = Producer({**t.kafka_config(), "linger.ms": 5, "acks": "all"})
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=value, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
    left = p.flush(60)
    if left:
        raise RuntimeError(f"{t.label}: {left} of {n} raw messages not delivered in 60 s")
    created = time.perf_counter()
    c = Consumer(
        {
            **t.kafka_config(),
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    tps = [TopicPartition(topic, q) for q in range(partitions)]
    # Opens (TLS, SASL) the connections to the leaders that the fetches below use.
    total = sum(c.get_watermark_offsets(tp, timeout=30, cached=False)[1] for tp in tps)
    connect = time.perf_counter() - created
    if total < n:
        raise RuntimeError(f"{t.label}: {total} of {n} raw messages on {topic}")
    c.assign([TopicPartition(topic, q, 0) for q in range(partitions)])
    got = 0
    t0 = time.perf_counter()
    while got < n:
        got += sum(1 for m in c.consume(num_messages=500, timeout=1.0) if m.error() is None)
    dt = time.perf_counter() - t0
    c.close()
    return n / dt, connect


@dataclass(frozen=True)
class Knobs:
    """What the workers of one measurement are given (None: the workers' default)."""

    record_window: int | None = None
    crash_limit: int | None = None
    metrics: bool = False  # each worker serves /metrics on a port of its own

    def label(self) -> str:
        window = self.record_window if self.record_window is not None else "default"
        quarantine = "off" if self.crash_limit == 0 else "on"
        metrics = ", /metrics served and scraped" if self.metrics else ""
        return f"record window {window}, crash quarantine {quarantine}{metrics}"


def worker_env(s: AppSettings, knobs: Knobs) -> dict[str, str]:
    # run.worker_env: settings.to_env(), which carries s.security (RINGLEADER_SASL_*, ...).
    env = run.worker_env(s)
    env.update({"RINGLEADER_SESSION_TIMEOUT_MS": "10000", "PYTHONPATH": str(ROOT)})
    if knobs.record_window is not None:
        env["RINGLEADER_WORKER_RECORD_WINDOW"] = str(knobs.record_window)
    if knobs.crash_limit is not None:
        env["RINGLEADER_CRASH_LIMIT"] = str(knobs.crash_limit)
    return env


def start_workers(
    s: AppSettings, count: int, concurrency: int, log_dir: Path, knobs: Knobs
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    """The worker processes and, with knobs.metrics, their /metrics ports."""
    out, ports = [], []
    for i in range(count):
        env = worker_env(s, knobs)
        if knobs.metrics:
            ports.append(free_port())
            env["RINGLEADER_METRICS_PORT"] = str(ports[-1])
        fh = open(log_dir / f"{s.namespace}-w{i}.log", "wb")  # noqa: SIM115 - owned by the child
        out.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "ringleader.worker.run", APP, "--id", f"w{i}"),
                    *("--concurrency", str(concurrency), "--log-level", "INFO"),
                ],
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        )
        fh.close()
    return out, ports


class Scraper(threading.Thread):
    """GET every worker's /metrics every `every` seconds until stopped; counts good scrapes."""

    def __init__(self, ports: list[int], every: float) -> None:
        super().__init__(daemon=True)
        self.ports, self.every = ports, every
        self.stopped = threading.Event()
        self.scrapes = 0

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            for port in self.ports:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        r.read()
                    self.scrapes += 1
                except OSError:
                    pass  # not serving yet (still starting): the next round tries again


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


def check_alive(s: AppSettings, procs: list[subprocess.Popen[bytes]], log_dir: Path) -> None:
    """A worker that exited (e.g. refused by the broker: exit 2) ends the measurement."""
    for i, p in enumerate(procs):
        if p.poll() is not None:
            log = log_dir / f"{s.namespace}-w{i}.log"
            raise RuntimeError(f"worker w{i} exited with {p.returncode}; see {log}")


def committed_total(s: AppSettings) -> int:
    c = GroupClient(s.bootstrap, f"{s.namespace}.workers", security=s.security)
    try:
        c.find_coordinator(5)
        got = c.fetch_offsets(
            topic=f"{s.namespace}.tasks", partitions=list(range(s.partitions)), timeout=5
        )
        return sum(max(0, po.offset) for po in got.values())
    finally:
        c.close()


def wait_committed(
    s: AppSettings, total: int, timeout: float, procs: list[subprocess.Popen[bytes]], log_dir: Path
) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(s, procs, log_dir)
        try:
            if committed_total(s) >= total:
                return time.monotonic()
        except REFUSED:
            raise
        except Exception:  # noqa: BLE001 - coordinator not there yet; the deadline bounds it
            pass
        time.sleep(0.2)
    raise TimeoutError(f"not all {total} offsets committed within {timeout}s")


def read_events(s: AppSettings, topic: str) -> list[Any]:
    c = Consumer({**s.librdkafka_config(), "group.id": f"bench-{uuid.uuid4().hex}"})
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


def forget(s: AppSettings) -> None:
    """Delete what the run left in Redis (results, run records live for the result TTL):
    100,000 tasks leave about 200,000 keys, and a Redis the tests share then slows every
    fixture that scans for its own namespace's keys."""
    r: redis.Redis[bytes] = redis.Redis.from_url(s.redis)
    try:
        batch: list[bytes] = []
        for key in r.scan_iter(match=f"ringleader:{s.namespace}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                r.unlink(*batch)
                batch = []
        if batch:
            r.unlink(*batch)
    finally:
        r.close()


def end_to_end(
    s: AppSettings,
    n: int,
    concurrency: int,
    log_dir: Path,
    knobs: Knobs,
    *,
    prefix: str,
    scrape_every: float = 1.0,
) -> tuple[float, float]:
    """(Client.submit_many tasks/s, end-to-end tasks/s)."""
    ensure_topics(s)
    with Client(settings=s) as client:
        t0 = time.perf_counter()
        for i in range(0, n, 10_000):
            client.submit_many([TaskSpec("noop")] * min(10_000, n - i))
        submit_rate = n / (time.perf_counter() - t0)
    print(f"  {prefix}backlog submitted: {n} tasks at {submit_rate:,.0f}/s (Client.submit_many)")
    launched = time.monotonic()
    procs, ports = start_workers(s, 2, concurrency, log_dir, knobs)
    scraper = Scraper(ports, scrape_every)
    if ports:
        scraper.start()
    try:
        done = wait_committed(s, n, 600, procs, log_dir)
    finally:
        scraper.stopped.set()
        stop_workers(procs)
    events = read_events(s, f"{s.namespace}.events")
    forget(s)
    started = [e.at for e in events if e.kind is EventKind.STARTED]
    succeeded = [e.at for e in events if e.kind is EventKind.SUCCEEDED]
    span = max(succeeded) - min(started)
    rate = len(succeeded) / span
    print(
        f"  {prefix}end to end, 2 worker processes x {concurrency} threads, {knobs.label()}: "
        f"{rate:,.0f} tasks/s ({len(succeeded)} succeeded in {span:.2f}s "
        f"from first start to last completion); launch-to-all-committed {done - launched:.1f}s"
        + (f"; {scraper.scrapes} scrapes of /metrics" if ports else "")
    )
    return submit_rate, rate


def latency(
    s: AppSettings, concurrency: int, log_dir: Path, knobs: Knobs, prefix: str
) -> dict[str, float]:
    """Submit-to-start p50/p99 and round trip p50/p99/max, in ms."""
    ensure_topics(s)
    procs, _ = start_workers(s, 2, concurrency, log_dir, knobs)
    try:
        with Client(settings=s) as client:
            # Warm up until a task round-trips (workers joined and assigned).
            deadline = time.monotonic() + 120
            while True:
                try:
                    client.submit("noop").result(timeout=5)
                    break
                except REFUSED:
                    raise
                except Exception:  # not ready yet
                    check_alive(s, procs, log_dir)
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
            events = read_events(s, f"{s.namespace}.events")
            start_at: dict[str, float] = {}
            for e in events:
                if e.task_id in want and e.kind is EventKind.STARTED:
                    start_at.setdefault(e.task_id, e.at)
            # submitted_at is stamped by the client; read it back from the task topic.
            submitted = read_submitted(s, want)
            lat = [(start_at[t] - submitted[t]) * 1000 for t in want if t in start_at]
            print(
                f"  {prefix}submit-to-start at {achieved:,.0f} submits/s (one submit call each): "
                f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms over {len(lat)} tasks"
            )
            rtt = []
            for _ in range(ROUND_TRIPS):
                t = time.perf_counter()
                client.submit("noop").result(timeout=30)
                rtt.append((time.perf_counter() - t) * 1000)
            print(
                f"  {prefix}round trip submit -> result(), {ROUND_TRIPS} sequential: "
                f"p50 {pct(rtt, 50):.2f} ms, p99 {pct(rtt, 99):.2f} ms, "
                f"max {max(rtt):.2f} ms, mean {statistics.fmean(rtt):.2f} ms"
            )
    finally:
        stop_workers(procs)
        forget(s)
    return {
        "s2s_p50": pct(lat, 50),
        "s2s_p99": pct(lat, 99),
        "rtt_p50": pct(rtt, 50),
        "rtt_p99": pct(rtt, 99),
        "rtt_max": max(rtt),
    }


def read_submitted(s: AppSettings, want: set[str]) -> dict[str, float]:
    from ringleader.worker.envelope import decode

    c = Consumer({**s.librdkafka_config(), "group.id": f"bench-{uuid.uuid4().hex}"})
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


# The summary table: (key, header, is a rate). Rates per second, the rest in ms. Submit-to-start
# is left out: its paced 1,000/s is not reached on a busy machine, and at different achieved
# rates the two rows would not compare (the per-step lines show it with its rate).
COLUMNS: list[tuple[str, str, bool]] = [
    ("raw", "raw/s", True),
    ("connect", "connect", False),
    ("submit", "submit/s", True),
    ("e2e", "e2e/s", True),
    ("e2e_off", "e2e q-off/s", True),
    ("e2e_metrics", "e2e+m/s", True),
    ("e2e_off_metrics", "q-off+m/s", True),
    ("rtt_p50", "rtt p50", False),
    ("rtt_p99", "rtt p99", False),
    ("rtt_max", "rtt max", False),
]

Results = dict[str, list[float]]


def print_table(targets: list[Target], results: dict[str, Results], trials: int) -> None:
    keys = [c for c in COLUMNS if any(results[t.label].get(c[0]) for t in targets)]
    width = max(len("secure / plain"), *(len(t.label) for t in targets)) + 2
    medians = {
        t.label: {k: statistics.median(v) for k, v in results[t.label].items() if v}
        for t in targets
    }
    how = "median of " + (f"{trials} trials" if trials > 1 else "1 trial")
    print(f"\nsummary ({how}; rates per second, times in ms; connect = raw consumer's first")
    print("connection, submit/s = Client.submit_many in both end-to-end runs, e2e q-off = crash")
    print(f"quarantine off, rtt = {ROUND_TRIPS} sequential submit -> result() round trips)")
    print("".ljust(width) + "".join(h.rjust(12) for _, h, _ in keys))
    for t in targets:
        row = medians[t.label]
        cells = [(f"{row[k]:,.0f}" if rate else f"{row[k]:.2f}") for k, _, rate in keys]
        print(t.label.ljust(width) + "".join(c.rjust(12) for c in cells))
    if len(targets) == 2:
        plain, secure = (medians[t.label] for t in targets)
        cells = [f"{secure[k] / plain[k]:.2f}x" if plain[k] else "-" for k, _, _ in keys]
        print("secure / plain".ljust(width) + "".join(c.rjust(12) for c in cells))
        print("(ratio of rates below 1x: secure is slower; of latencies above 1x: slower)")
    if trials > 1:
        print("per trial:")
        for t in targets:
            for k, h, rate in keys:
                vals = results[t.label].get(k, [])
                shown = ", ".join(f"{v:,.0f}" if rate else f"{v:.2f}" for v in vals)
                print(f"  {t.label} {h}: {shown}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--record-window", type=int, help="RINGLEADER_WORKER_RECORD_WINDOW")
    ap.add_argument(
        "--secure",
        type=Path,
        metavar="STACK",
        help="also measure this secured stack (`local up --secure --json` output or its --dir)",
    )
    ap.add_argument("--trials", type=int, default=1, help="repeat the interleaved sequence")
    ap.add_argument("--metrics", action="store_true", help="also end to end with /metrics on")
    ap.add_argument("--scrape-every", type=float, default=1.0, metavar="S")
    args = ap.parse_args()
    env_key = "RINGLEADER_TEST_KAFKA" if args.broker == "kafka" else "RINGLEADER_TEST_TANSU"
    targets = [
        Target(
            f"PLAINTEXT ({args.broker})",
            os.environ.get(env_key, "127.0.0.1:19092"),
            os.environ.get("RINGLEADER_TEST_REDIS", "redis://127.0.0.1:16379/0"),
        )
    ]
    if args.secure is not None:
        targets.append(load_stack(args.secure))
    log_dir = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    print(f"bench_dispatch, {args.tasks} tasks, {args.trials} trial(s), logs in {log_dir}")
    for t in targets:
        print(f"  {t.describe()}")
    knobs = Knobs(record_window=args.record_window)
    # The same with no start record before each run: what crash quarantine costs.
    off = Knobs(record_window=args.record_window, crash_limit=0)
    results: dict[str, Results] = {t.label: {} for t in targets}

    def add(t: Target, **values: float) -> None:
        for k, v in values.items():
            results[t.label].setdefault(k, []).append(v)

    def step_raw(t: Target, prefix: str) -> None:
        rate, connect = raw_consume(t, args.tasks, args.partitions)
        print(
            f"  {prefix}raw confluent-kafka consume (1 consumer, {args.partitions} partitions): "
            f"{rate:,.0f}/s (connect {connect * 1000:.0f} ms, not in the rate)"
        )
        add(t, raw=rate, connect=connect * 1000)

    def step_e2e(t: Target, prefix: str) -> None:
        s = t.settings("e2e", args.partitions)
        submit, rate = end_to_end(s, args.tasks, args.concurrency, log_dir, knobs, prefix=prefix)
        add(t, submit=submit, e2e=rate)

    def step_e2e_off(t: Target, prefix: str) -> None:
        s = t.settings("e2e-off", args.partitions)
        submit, rate = end_to_end(s, args.tasks, args.concurrency, log_dir, off, prefix=prefix)
        add(t, submit=submit, e2e_off=rate)

    def with_metrics(t: Target, prefix: str, crash_limit: int | None) -> float:
        s = t.settings("e2e-metrics", args.partitions)
        _, rate = end_to_end(
            s, args.tasks, args.concurrency, log_dir,
            Knobs(args.record_window, crash_limit, metrics=True),
            prefix=prefix, scrape_every=args.scrape_every,
        )  # fmt: skip
        return rate

    def step_e2e_metrics(t: Target, prefix: str) -> None:
        add(t, e2e_metrics=with_metrics(t, prefix, None))

    def step_e2e_off_metrics(t: Target, prefix: str) -> None:
        add(t, e2e_off_metrics=with_metrics(t, prefix, 0))

    def step_latency(t: Target, prefix: str) -> None:
        add(
            t,
            **latency(t.settings("lat", args.partitions), args.concurrency, log_dir, knobs, prefix),
        )

    steps: list[Callable[[Target, str], None]] = [step_raw, step_e2e, step_e2e_off]
    # Each run with /metrics beside the same run without; which of a pair goes first
    # alternates by trial (the second run of a pair was seen slower, metrics or not).
    pairs = [(step_e2e, step_e2e_metrics), (step_e2e_off, step_e2e_off_metrics)]
    if args.metrics:
        for plain, metered in pairs:
            steps.insert(steps.index(plain) + 1, metered)
    if not args.skip_latency:
        steps.append(step_latency)
    for trial in range(args.trials):
        if args.trials > 1:
            print(f"trial {trial + 1} of {args.trials}")
        order = list(steps)
        if args.metrics and trial % 2:
            for plain, metered in pairs:
                i, j = order.index(plain), order.index(metered)
                order[i], order[j] = order[j], order[i]
        for step in order:
            for t in targets:
                step(t, f"[{t.label}] " if len(targets) > 1 else "")
    print_table(targets, results, args.trials)
    if args.metrics:
        for t in targets:
            for metered, plain, what in (
                ("e2e_metrics", "e2e", "quarantine on"),
                ("e2e_off_metrics", "e2e_off", "quarantine off"),
            ):
                got = results[t.label]
                ratios = [m / p for m, p in zip(got[metered], got[plain], strict=True)]
                shown = ", ".join(f"{r:.3f}" for r in ratios)
                print(f"{t.label}, {what}: e2e with /metrics / without, per trial: {shown} "
                      f"(median {statistics.median(ratios):.3f}; overhead "
                      f"{(1 - statistics.median(ratios)) * 100:+.1f}%)")  # fmt: skip


if __name__ == "__main__":
    main()
