"""The same no-op workload on Celery, Dramatiq and ringleader, in one run (prints figures).

After dramatiq's own benchmarks against Celery. Each trial runs the three systems one after
the other, the order rotated from trial to trial (celery, dramatiq, ringleader; then dramatiq,
ringleader, celery; ...), after a warm-up round (smaller, not reported). For each system:

1. enqueue: `--tasks` no-op tasks, one call per task, no worker running: Celery
   `task.delay()`, Dramatiq `actor.send()`, ringleader `Client.submit` (which returns once
   Kafka acknowledged the record). ringleader's `Client.submit_many` of as many tasks, into
   a namespace of its own that is not drained, is printed beside it as an extra figure.
2. drain: the workers start (Celery `--pool prefork -c 2`; Dramatiq `-p 2 -t 8`; ringleader
   2 worker processes x 8 threads, as bench_dispatch runs them) and run the backlog. Rates:
   tasks / (last task end - first task start) and tasks / (last task end - worker launch).
3. acknowledged: how long after the last task end the system counted every task acknowledged
   (polled every 20 ms, so +-20 ms): Celery's queue and `unacked` hash empty, Dramatiq's queue
   and message hash empty, ringleader's committed offsets of the task topic summing to the
   tasks submitted.
4. round trip: with the workers still running, `--calls` sequential calls of submit one task
   and wait for its result: Celery `delay().get()` (Redis result backend, which waits on
   pub/sub), Dramatiq `send().get_result(block=True)` (Results middleware on Redis, a
   BRPOPLPUSH), ringleader `submit().result()`. One call first, not counted (connections).

Completion is recorded the same way in all three (benchmarks/peers/marks.py): the task body
is the same function, which writes one pipelined Redis request at its end: ZADD LT of its start
time and ZADD GT of its end time (keeping the earliest start and the latest end), INCR of a
counter. The benchmark polls the counter to know the drain is over; the rates come from the
recorded times, not from the polling. Every system also stores each task's result in Redis
(Celery's default with a result backend, Dramatiq's actor with `store_results=True`,
ringleader always). Per-task logging is off in all three (Celery -l WARNING, ringleader
--log-level WARNING; Dramatiq logs no line per task at its default level).

Brokers: Celery and Dramatiq on Redis, each trial under a key prefix of its own
(`bench-peers:<system>:<id>:`), its keys deleted after the trial; ringleader on Kafka + Redis
with a fresh namespace per trial, whose topics, group and Redis keys are deleted after it.
Addresses as bench_dispatch takes them (from `ringleader local up`):

    RINGLEADER_TEST_KAFKA=127.0.0.1:19092 RINGLEADER_TEST_REDIS=redis://127.0.0.1:16379/0 \\
        .venv/bin/python benchmarks/bench_peers.py [--tasks 20000] [--calls 500] [--trials 3]
    .venv/bin/python benchmarks/bench_peers.py --bootstrap K --redis R --only ringleader

The peers come from the `bench` extra: `.venv/bin/pip install -e '.[bench]'`.

Not the same in the three, and so not measured away (see also the notes printed at the end):
Celery acknowledges a task when a worker receives it (before it runs: a worker crash loses
it), Dramatiq after it ran, ringleader commits offsets after the tasks completed and, with
crash quarantine on (its default), records each start in Redis before the task runs. A
ringleader submit is durable in Kafka (acks=all) when it returns; a Celery or Dramatiq enqueue
is in Redis memory. Celery's `delay()` with a Redis result backend also subscribes to the
task's result channel (and unsubscribes when the AsyncResult is collected).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# This checkout's ringleader, and peers/ (the apps) however the script is started.
sys.path[:0] = [str(BENCH), str(ROOT)]

from confluent_kafka import libversion  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from peers import marks  # noqa: E402

from ringleader.client import Client, TaskSpec  # noqa: E402
from ringleader.coordinator.wire import GroupClient  # noqa: E402
from ringleader.worker import run  # noqa: E402
from ringleader.worker.namespace import ensure_topics  # noqa: E402
from ringleader.worker.routing import topics  # noqa: E402
from ringleader.worker.settings import AppSettings  # noqa: E402

SYSTEMS = ("celery", "dramatiq", "ringleader")
LABELS = {
    "celery": "Celery (prefork 2)",
    "dramatiq": "Dramatiq (-p 2 -t 8)",
    "ringleader": "ringleader (2 x 8)",
}
# The peer systems' distributions (import name, distribution) and what installs them.
PEER_DISTS = {"celery": "celery", "dramatiq": "dramatiq"}
INSTALL = ".venv/bin/pip install -e '.[bench]'  (or: .venv/bin/pip install 'celery[redis]' "
INSTALL += "'dramatiq[redis]')"
PROCESSES, THREADS = 2, 8
CELERY_CONCURRENCY = 2
STOP_TIMEOUT = 30.0  # seconds after SIGTERM before SIGKILL
POLL = 0.02  # seconds between polls of the counter and of the acknowledgement condition
SUBMIT_MANY_CHUNK = 10_000  # as bench_dispatch: bounds the client's memory per call


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of non-empty `values`."""
    v = sorted(values)
    return v[min(len(v) - 1, round(q / 100 * (len(v) - 1)))]


@dataclass(frozen=True)
class Services:
    bootstrap: str
    redis: str
    log_dir: Path
    ringleader_env: Mapping[str, str]  # extra RINGLEADER_* for ringleader's workers


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> Proc:
    log = log_dir / f"{name}.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(
            list(argv),
            cwd=BENCH,
            env=dict(env),
            stdout=fh,
            stderr=subprocess.STDOUT,
            # A session of its own: the SIGKILL fallback reaches its forked children too
            # (Celery's pool, Dramatiq's processes), and a Ctrl-C here does not.
            start_new_session=True,
        )
    return Proc(name, popen, log)


def stop(procs: Sequence[Proc]) -> None:
    """SIGTERM each live one by its PID; after STOP_TIMEOUT, SIGKILL its process group."""
    live = [p for p in procs if p.popen.poll() is None]
    for p in live:
        p.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for p in live:
        try:
            p.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"  {p.name} still running {STOP_TIMEOUT:.0f}s after SIGTERM: SIGKILL")
            # The leader is still alive, so the group id is still this child's own.
            os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait(10)


class RunFailed(Exception):
    pass


def check_alive(procs: Sequence[Proc]) -> None:
    for p in procs:
        if p.popen.poll() is not None:
            raise RunFailed(f"{p.name} exited with {p.popen.returncode}; see {p.log}")


def delete_prefix(r: redis.Redis[bytes], pattern: str) -> int:
    """Delete the keys matching `pattern` (SCAN, then UNLINK in batches); how many."""
    n, batch = 0, []
    for key in r.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            n += r.unlink(*batch)
            batch = []
    if batch:
        n += r.unlink(*batch)
    return n


def peer_env(svc: Services, prefix: str) -> dict[str, str]:
    """A worker's environment: this one's, the peers' modules on the path, BENCH_PEERS_*."""
    env = dict(os.environ)
    path = [str(BENCH), str(ROOT)]
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(path),
            "PYTHONUNBUFFERED": "1",
            "BENCH_PEERS_REDIS": svc.redis,
            "BENCH_PEERS_PREFIX": prefix,
        }
    )
    return env


class Peer:
    """One system in one trial: its client objects, its workers, its keys."""

    name = ""

    def __init__(self, svc: Services, tag: str) -> None:
        self.svc, self.tag = svc, tag
        self.prefix = f"bench-peers:{self.name}:{tag}:"
        self.env = peer_env(svc, self.prefix)
        self.tasks = 0

    def enqueue(self, n: int) -> None:
        raise NotImplementedError

    def extra_enqueue(self, n: int) -> float | None:
        """A second enqueue figure (tasks/s), where the system has one."""
        return None

    def start(self, procs: list[Proc]) -> None:
        """Start the workers, appending each to `procs` as soon as it runs."""
        raise NotImplementedError

    def acked(self, r: redis.Redis[bytes]) -> bool:
        raise NotImplementedError

    def call(self, timeout: float) -> None:
        """Submit one task and wait for its result."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def cleanup(self, r: redis.Redis[bytes]) -> None:
        delete_prefix(r, f"{self.prefix}*")


class CeleryPeer(Peer):
    name = "celery"

    def __init__(self, svc: Services, tag: str) -> None:
        super().__init__(svc, tag)
        from peers import celery_app

        self.app, self.task = celery_app.make(self.env)

    def enqueue(self, n: int) -> None:
        self.tasks += n
        delay = self.task.delay
        for _ in range(n):
            delay()

    def start(self, procs: list[Proc]) -> None:
        argv = [
            *(sys.executable, "-m", "celery", "-A", "peers.celery_app", "worker"),
            *("--pool", "prefork", "-c", str(CELERY_CONCURRENCY), "-l", "WARNING"),
            *("-n", f"bench-peers-{self.tag}@%h"),
        ]
        procs.append(spawn(f"celery-{self.tag}", argv, self.env, self.svc.log_dir))

    def acked(self, r: redis.Redis[bytes]) -> bool:
        # kombu's Redis transport: the queue is a list, delivered-not-acked a hash.
        return r.llen(f"{self.prefix}celery") == 0 and r.hlen(f"{self.prefix}unacked") == 0

    def call(self, timeout: float) -> None:
        self.task.delay().get(timeout=timeout)

    def close(self) -> None:
        self.app.close()


class DramatiqPeer(Peer):
    name = "dramatiq"

    def __init__(self, svc: Services, tag: str) -> None:
        super().__init__(svc, tag)
        from peers import dramatiq_app

        self.broker, self.backend, self.actor = dramatiq_app.make(self.env)

    def enqueue(self, n: int) -> None:
        self.tasks += n
        send = self.actor.send
        for _ in range(n):
            send()

    def start(self, procs: list[Proc]) -> None:
        argv = [
            *(sys.executable, "-m", "dramatiq", "peers.dramatiq_app:broker"),
            *("-p", str(PROCESSES), "-t", str(THREADS)),
        ]
        procs.append(spawn(f"dramatiq-{self.tag}", argv, self.env, self.svc.log_dir))

    def acked(self, r: redis.Redis[bytes]) -> bool:
        # RedisBroker: queue list `<ns>:default`, message bodies in `<ns>:default.msgs` until
        # acknowledged (after the actor ran).
        ns = f"{self.prefix}dramatiq"
        return r.llen(f"{ns}:default") == 0 and r.hlen(f"{ns}:default.msgs") == 0

    def call(self, timeout: float) -> None:
        self.actor.send().get_result(backend=self.backend, block=True, timeout=int(timeout * 1000))

    def close(self) -> None:
        self.broker.close()
        self.backend.client.close()


class RingleaderPeer(Peer):
    name = "ringleader"

    def __init__(self, svc: Services, tag: str) -> None:
        super().__init__(svc, tag)
        self.settings = self._settings(f"bench-peers-{tag}")
        ensure_topics(self.settings)
        self.client = Client(settings=self.settings)
        self.namespaces = [self.settings.namespace]
        self.group: GroupClient | None = None

    def _settings(self, namespace: str) -> AppSettings:
        return AppSettings(namespace=namespace, bootstrap=self.svc.bootstrap, redis=self.svc.redis)

    def enqueue(self, n: int) -> None:
        self.tasks += n
        submit = self.client.submit
        for _ in range(n):
            submit("noop")

    def extra_enqueue(self, n: int) -> float:
        s = self._settings(f"{self.settings.namespace}-many")
        self.namespaces.append(s.namespace)
        ensure_topics(s)
        with Client(settings=s) as client:
            t0 = time.perf_counter()
            for i in range(0, n, SUBMIT_MANY_CHUNK):
                client.submit_many([TaskSpec("noop")] * min(SUBMIT_MANY_CHUNK, n - i))
            return n / (time.perf_counter() - t0)

    def start(self, procs: list[Proc]) -> None:
        # run.worker_env: the base environment without its RINGLEADER_*, then the settings'.
        env = run.worker_env(self.settings, base=self.env)
        # As bench_dispatch runs its workers.
        env["RINGLEADER_SESSION_TIMEOUT_MS"] = "10000"
        env.update(self.svc.ringleader_env)
        for i in range(PROCESSES):
            argv = [
                *(sys.executable, "-m", "ringleader.worker.run", "peers.ringleader_app:app"),
                *("--id", f"w{i}", "--concurrency", str(THREADS), "--log-level", "WARNING"),
            ]
            procs.append(spawn(f"ringleader-{self.tag}-w{i}", argv, env, self.svc.log_dir))

    def acked(self, r: redis.Redis[bytes]) -> bool:
        s = self.settings
        if self.group is None:
            self.group = GroupClient(s.bootstrap, f"{s.namespace}.workers", security=s.security)
            self.group.find_coordinator(5)
        got = self.group.fetch_offsets(
            topic=topics(s.namespace).tasks, partitions=list(range(s.partitions)), timeout=5
        )
        return sum(max(0, po.offset) for po in got.values()) >= self.tasks

    def call(self, timeout: float) -> None:
        self.client.submit("noop").result(timeout=timeout)

    def close(self) -> None:
        self.client.close()
        if self.group is not None:
            self.group.close()

    def cleanup(self, r: redis.Redis[bytes]) -> None:
        super().cleanup(r)
        admin = AdminClient(self.settings.librdkafka_config())
        names = [t for ns in self.namespaces for t in topics(ns).all()]
        futures = {
            **admin.delete_topics(names, operation_timeout=30),
            **admin.delete_consumer_groups([f"{self.settings.namespace}.workers"]),
        }
        for name, fut in futures.items():
            try:
                fut.result(30)
            except Exception as e:  # noqa: BLE001 - one not made (no group yet): say it, go on
                print(f"  cleanup: {name}: {e}")
        for ns in self.namespaces:
            delete_prefix(r, f"ringleader:{ns}:*")


PEERS: dict[str, Callable[[Services, str], Peer]] = {
    "celery": CeleryPeer,
    "dramatiq": DramatiqPeer,
    "ringleader": RingleaderPeer,
}


@dataclass
class Trial:
    system: str
    tasks: int
    enqueue: float  # tasks/s, one call per task
    submit_many: float | None  # ringleader's Client.submit_many, tasks/s
    drain_run: float  # tasks / (last end - first start)
    drain_launch: float  # tasks / (last end - worker launch)
    ack_ms: float  # all acknowledged, ms after the last end (polled)
    done: int  # task bodies finished when the drain was seen over (more: some ran twice)
    rtt_p50: float
    rtt_p99: float
    rtt_max: float
    load: float  # 1-minute load average at the trial's end
    tracebacks: int  # in the workers' logs: a failed task (retried, so the drain is slower)


def wait_until(cond: Callable[[], bool], timeout: float, procs: Sequence[Proc], what: str) -> float:
    """Poll `cond` every POLL seconds; the wall time it first held. Fails on a worker exit."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return time.time()
        check_alive(procs)
        if time.monotonic() > deadline:
            raise RunFailed(f"{what}: not within {timeout:.0f}s")
        time.sleep(POLL)


def run_trial(name: str, svc: Services, r: redis.Redis[bytes], n: int, calls: int) -> Trial:
    peer = PEERS[name](svc, uuid.uuid4().hex[:8])
    procs: list[Proc] = []
    try:
        t0 = time.perf_counter()
        peer.enqueue(n)
        enqueue = n / (time.perf_counter() - t0)
        extra = peer.extra_enqueue(n)
        launched = time.time()
        peer.start(procs)
        done_key = marks.done_key(peer.prefix)
        wait_until(
            lambda: int(r.get(done_key) or 0) >= n, 120 + n / 50, procs, f"{name}: drain of {n}"
        )
        done = int(r.get(done_key) or 0)
        first = r.zscore(marks.marks_key(peer.prefix), "first")
        last = r.zscore(marks.marks_key(peer.prefix), "last")
        assert first is not None and last is not None
        acked = wait_until(lambda: peer.acked(r), 60, procs, f"{name}: all acknowledged")
        peer.call(60)  # the first call makes the waiting side's connections: not counted
        rtt = []
        for _ in range(calls):
            t = time.perf_counter()
            peer.call(30)
            rtt.append((time.perf_counter() - t) * 1000)
    finally:
        try:
            stop(procs)
        finally:
            peer.close()
            peer.cleanup(r)
    tracebacks = count_tracebacks(procs)
    return Trial(
        system=name,
        tasks=n,
        enqueue=enqueue,
        submit_many=extra,
        drain_run=n / (last - first),
        drain_launch=n / (last - launched),
        ack_ms=max(0.0, acked - last) * 1000,
        done=done,
        rtt_p50=pct(rtt, 50),
        rtt_p99=pct(rtt, 99),
        rtt_max=max(rtt),
        load=os.getloadavg()[0],
        tracebacks=tracebacks,
    )


def count_tracebacks(procs: Sequence[Proc]) -> int:
    n = 0
    for p in procs:
        with contextlib.suppress(OSError):
            n += p.log.read_text(errors="replace").count("Traceback (most recent call last)")
    if n:
        print(f"  {n} tracebacks in the workers' logs: {', '.join(str(p.log) for p in procs)}")
    return n


def describe(t: Trial) -> str:
    many = f" (submit_many {t.submit_many:,.0f}/s)" if t.submit_many is not None else ""
    twice = f", {t.done - t.tasks} ran twice" if t.done != t.tasks else ""
    twice += f", {t.tracebacks} tracebacks logged" if t.tracebacks else ""
    return (
        f"enqueue {t.enqueue:,.0f}/s{many}; drain {t.drain_run:,.0f}/s from first start, "
        f"{t.drain_launch:,.0f}/s from launch, all acknowledged +{t.ack_ms:.0f} ms{twice}; "
        f"round trip p50 {t.rtt_p50:.2f} / p99 {t.rtt_p99:.2f} / max {t.rtt_max:.2f} ms; "
        f"load {t.load:.2f}"
    )


def span(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """`min-max` of the values (one value when they print the same)."""
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def rate_span(values: Sequence[float]) -> str:
    if max(values) >= 50_000:
        return span(values, lambda v: f"{v / 1000:,.0f}") + "k/s"
    return span(values, lambda v: f"{v:,.0f}") + "/s"


def ms(v: float) -> str:
    return f"{v:.2f}" if v < 1 else f"{v:.1f}"


def table(results: Mapping[str, list[Trial]]) -> list[str]:
    systems = [s for s in SYSTEMS if results.get(s)]
    rows: list[tuple[str, Callable[[list[Trial]], str]]] = [
        (
            "enqueue, one call per task",
            lambda ts: (
                rate_span([t.enqueue for t in ts])
                + (
                    f" (`submit_many`: {rate_span([t.submit_many for t in ts if t.submit_many])})"
                    if any(t.submit_many for t in ts)
                    else ""
                )
            ),
        ),
        (
            "drain, first task start to last task end",
            lambda ts: rate_span([t.drain_run for t in ts]),
        ),
        ("drain, from worker launch", lambda ts: rate_span([t.drain_launch for t in ts])),
        (
            "all acknowledged, after the last task end (polled)",
            lambda ts: span([t.ack_ms for t in ts], lambda v: f"{v:,.0f}") + " ms",
        ),
        (
            "round trip p50 / p99 (max)",
            lambda ts: (
                f"{span([t.rtt_p50 for t in ts], ms)} / {span([t.rtt_p99 for t in ts], ms)}"
                f" ({span([t.rtt_max for t in ts], ms)}) ms"
            ),
        ),
    ]
    out = [
        "| | " + " | ".join(LABELS[s] for s in systems) + " |",
        "| --- |" + " --- |" * len(systems),
    ]
    for label, cell in rows:
        out.append(f"| {label} | " + " | ".join(cell(results[s]) for s in systems) + " |")
    return out


def versions(r: redis.Redis[bytes]) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("ringleader", "celery", "kombu", "dramatiq", "redis", "confluent-kafka"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    out["librdkafka"] = libversion()[0]
    out["redis-server"] = str(r.info("server").get("redis_version", "?"))
    return out


def parse_only(text: str) -> list[str]:
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SYSTEMS]
    if bad or not names:
        raise SystemExit(f"--only: {', '.join(bad) or '(none)'}: choose from {', '.join(SYSTEMS)}")
    return [s for s in SYSTEMS if s in names]


def parse_env(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("RINGLEADER_"):
            raise SystemExit(f"--ringleader-env {item!r}: give RINGLEADER_NAME=VALUE")
        out[key] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--tasks", type=int, default=20_000, help="no-op tasks per drain")
    ap.add_argument("--calls", type=int, default=500, help="sequential round trips")
    ap.add_argument("--trials", type=int, default=3, help="reported trials, order rotated")
    ap.add_argument("--warmup-tasks", type=int, default=2000, help="0: no warm-up round")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="comma list of " + ",".join(SYSTEMS))
    ap.add_argument(
        "--bootstrap", default=os.environ.get("RINGLEADER_TEST_KAFKA", "127.0.0.1:19092")
    )
    ap.add_argument(
        "--redis", default=os.environ.get("RINGLEADER_TEST_REDIS", "redis://127.0.0.1:16379/0")
    )
    ap.add_argument(
        "--ringleader-env",
        action="append",
        default=[],
        metavar="RINGLEADER_X=V",
        help="for ringleader's workers, e.g. RINGLEADER_CRASH_LIMIT=0 (repeatable)",
    )
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    if args.tasks < 1 or args.calls < 1 or args.trials < 1:
        raise SystemExit("--tasks, --calls and --trials must be at least 1")
    systems = parse_only(args.only)
    missing = [s for s in systems if s in PEER_DISTS and importlib.util.find_spec(s) is None]
    if missing:
        print(
            f"bench_peers: {', '.join(missing)} not installed; install the peers with\n"
            f"  {INSTALL}\nor run ringleader alone with --only ringleader",
            file=sys.stderr,
        )
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    svc = Services(args.bootstrap, args.redis, log_dir, parse_env(args.ringleader_env))
    r: redis.Redis[bytes] = redis.Redis.from_url(args.redis)
    r.ping()
    started = datetime.now(UTC)
    facts: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "load_start": os.getloadavg(),
        "machine": f"{platform.system()} {platform.machine()}",
        "versions": versions(r),
        "kafka": args.bootstrap,
        "ringleader_env": svc.ringleader_env,
    }
    print(
        f"bench_peers: {', '.join(systems)}; {args.tasks} tasks, {args.calls} round trips, "
        f"{args.trials} trial(s); Kafka {args.bootstrap}, Redis {args.redis}; logs in {log_dir}"
    )
    if args.warmup_tasks > 0:
        n, calls = min(args.warmup_tasks, args.tasks), min(50, args.calls)
        print(f"warm-up ({n} tasks, {calls} round trips; not reported)")
        for name in systems:
            t = run_trial(name, svc, r, n, calls)
            print(f"  {name}: {describe(t)}")
    results: dict[str, list[Trial]] = {s: [] for s in systems}
    for k in range(args.trials):
        order = systems[k % len(systems) :] + systems[: k % len(systems)]
        print(f"trial {k + 1} of {args.trials}: {', '.join(order)}")
        for name in order:
            t = run_trial(name, svc, r, args.tasks, args.calls)
            results[name].append(t)
            print(f"  {name}: {describe(t)}")
    ended = datetime.now(UTC)
    facts["ended"] = ended.strftime("%Y-%m-%d %H:%M UTC")
    facts["load_end"] = os.getloadavg()
    how = f"{args.trials} trials, min-max" if args.trials > 1 else "1 trial"
    print(
        f"\n{args.tasks:,} no-op tasks, {args.calls} round trips, {how}; "
        f"{facts['started']} to {ended.strftime('%H:%M')} UTC\n"
    )
    print("\n".join(table(results)))
    failed = {s: sum(t.tracebacks for t in ts) for s, ts in results.items()}
    if any(failed.values()):
        shown = ", ".join(f"{s} {n}" for s, n in failed.items() if n)
        print(f"\nnot clean: tracebacks in the workers' logs ({shown}; logs in {log_dir})")
    v = facts["versions"]
    print(
        f"\n{facts['machine']}, nproc {facts['nproc']}, load average "
        f"{' '.join(f'{x:.2f}' for x in facts['load_start'])} at the start, "
        f"{' '.join(f'{x:.2f}' for x in facts['load_end'])} at the end; Python {v['python']}; "
        + ", ".join(f"{k} {v[k]}" for k in v if k != "python")
        + (f"; ringleader workers with {svc.ringleader_env}" if svc.ringleader_env else "")
    )
    if args.json is not None:
        doc = {
            "facts": facts,
            "args": {k: str(val) for k, val in vars(args).items()},
            "trials": {s: [asdict(t) for t in ts] for s, ts in results.items()},
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
