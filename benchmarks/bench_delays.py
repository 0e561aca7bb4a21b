"""Delayed tasks through a failover of the group leader, with worker OS processes (issue #12;
prints figures, asserts nothing).

N tasks (`count` of tests/worker/apps/counting.py, which records each execution start in
Redis: `<ns>:log` lines "task_id pid attempt wall_time") are submitted with
`Client.submit_many` in chunks, each with `not_before` = the chunk's submit time +
uniform(min delay, max delay) s, so the client parks them in the namespace's delayed set
(ringleader/scheduling.py) and the group leader's keeper (worker/keeper.py, every 0.5 s)
puts each on the task topic when due. 3 worker processes (`python -m ringleader.worker.run
tests.worker.apps.counting:app`, 4 threads each, session timeout 6 s: a SIGKILL is noticed
after ~6 s) run them.

Two runs, each in a fresh namespace, one after the other:
* baseline: nothing is killed (steady state on the same machine, in the same run);
* kill: `--kill-after` s after the submission began, the group leader and one other worker
  are SIGKILLed together (optionally a replacement worker starts `--replacement` s after).

Per run: tasks, tasks executed, tasks run more than once (and the extra runs), tasks never
run, tasks without a completion record, tasks started before their due time (each run's
start wall time against the task's not_before; the same machine's clock), tasks still
parked at the end, tasks put on the topic twice. Lateness = a task's first start - its due
time: p50, p90, p99, max, for the tasks due before the kill, during the failover window
(from the kill until the new leader's first move + `--settle` s) and after it; the baseline
run's tasks are split at the same offsets from its submission start. Lateness is split in
two: due -> on the task topic (the record's CreateTime, stamped by the keeper's producer)
and on the topic -> first start. For the kill run: when the new leader's committed
generation was seen (`ringleader.status.gather`, polled), its first record on the topic
(the first CreateTime after the kill: its first move), when the delayed set first shrank
after the kill (sampled from Redis every 0.1 s; nobody else removes from it once the
submission is done, but the keeper forgets a task only after its produce is acknowledged),
and the first start of a task due after the kill (only the new leader can have moved it).

    source /tmp/rl-env.sh   # RINGLEADER_TEST_KAFKA, RINGLEADER_TEST_REDIS
    .venv/bin/python benchmarks/bench_delays.py [--tasks 10000] [--max-delay 20] \\
        [--kill-after 5] [--replacement SECONDS] [--no-baseline]

Brokers are not started or stopped here: `--kafka`/`--redis`, else RINGLEADER_TEST_KAFKA and
RINGLEADER_TEST_REDIS. Worker logs and each run's execution log (runs.txt) stay in a
temporary directory printed in the header.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
from confluent_kafka import Consumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._workers import (  # noqa: E402
    Exec,
    Group,
    RunFailed,
    WorkerProc,
    check_alive,
    group_of,
    pct,
    read_execs,
    start_worker,
    stop_workers,
)
from ringleader.client import Client, TaskSpec  # noqa: E402
from ringleader.worker import run  # noqa: E402
from ringleader.worker.delayed import DelayedSet  # noqa: E402
from ringleader.worker.envelope import decode  # noqa: E402
from ringleader.worker.keeper import MOVE_BATCH, MOVE_INTERVAL  # noqa: E402
from ringleader.worker.namespace import ensure_topics  # noqa: E402
from ringleader.worker.results import ResultStore  # noqa: E402
from ringleader.worker.routing import topics  # noqa: E402
from ringleader.worker.settings import AppSettings, WorkerSettings  # noqa: E402

PARTITIONS = 12
SESSION_MS = 6000
SAMPLE_EVERY = 0.1  # seconds between looks at the delayed set
GROUP_TIMEOUT = 120.0  # for the group to come up
BUSY_SPAN = 5.0  # seconds: the keeper's rate is taken over the busiest span this long
QUIET = 3.0  # seconds waited after the last completion for late duplicate runs
BUCKETS = ("due before the kill", "due in the failover window", "due after", "all")


# --- worker processes ------------------------------------------------------------------------


def wait_group(s: AppSettings, ws: Mapping[str, WorkerProc], expected: set[str]) -> Group:
    """Until the committed generation has a leader and gives partitions to exactly
    `expected`."""
    deadline = time.monotonic() + GROUP_TIMEOUT
    while True:
        check_alive({n: ws[n] for n in expected})  # the killed ones are gone
        try:
            g = group_of(s)
            if (
                g.leader in expected
                and set(g.owners) == expected
                and all(g.owners.values())
                and sum(g.owners.values()) == PARTITIONS
            ):
                return g
        except Exception:  # noqa: BLE001 - not there yet; the deadline bounds it
            pass
        if time.monotonic() > deadline:
            raise RunFailed(f"the group {sorted(expected)} was not up in {GROUP_TIMEOUT:.0f}s")
        time.sleep(0.5)


# --- the delayed set, sampled -----------------------------------------------------------------


class Sampler(threading.Thread):
    """(wall time, tasks in the delayed set, of them due by then) every SAMPLE_EVERY s."""

    def __init__(self, r: redis.Redis[bytes], key: str) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self._r, self._key = r, key
        self.samples: list[tuple[float, int, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_EVERY):
            now = time.time()
            try:
                pipe = self._r.pipeline(transaction=False)
                pipe.zcard(self._key)
                pipe.zcount(self._key, "-inf", repr(now))
                size, due = pipe.execute()
            except redis.RedisError:
                continue
            self.samples.append((now, int(size), int(due)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str  # baseline | kill
    namespace: str
    submitted: int = 0
    submit_start: float = 0.0  # wall time
    submit_s: float = 0.0
    due: dict[str, float] = field(default_factory=dict)  # task id -> not_before
    execs: list[Exec] = field(default_factory=list)
    completed: int = 0
    parked_at_end: int = 0
    note: str = ""
    killed: list[tuple[str, int]] = field(default_factory=list)  # (worker id, pid)
    leader_before: str | None = None
    kill_at: float | None = None
    new_leader: str | None = None
    new_leader_at: float | None = None
    first_move_at: float | None = None  # the delayed set first shrank after the kill
    first_produce_at: float | None = None  # CreateTime of the first copy on the topic after it
    overdue_peak: int = 0  # most tasks due but still parked at one sample, after the kill
    replacement_at: float | None = None
    done_at: float | None = None  # every task had a completion record
    warnings: list[str] = field(default_factory=list)  # WARNING/ERROR lines of worker logs
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    # task id -> CreateTime (s) of each copy on the task topic (the keeper's produce)
    on_topic: dict[str, list[float]] = field(default_factory=dict)
    parked_peak: tuple[int, float] = (0, 0.0)  # most due but parked at one sample, when


def read_topic(s: AppSettings, want: Mapping[str, float]) -> dict[str, list[float]]:
    """Each wanted task's copies on `<ns>.tasks`: their CreateTime, which the keeper's
    producer stamps when it puts the task on the topic."""
    c = Consumer({**s.librdkafka_config(), "group.id": f"bench-{uuid.uuid4().hex}"})
    topic = topics(s.namespace).tasks
    tps = [TopicPartition(topic, p) for p in range(s.partitions)]
    total = sum(c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps)
    c.assign([TopicPartition(topic, p, 0) for p in range(s.partitions)])
    out: dict[str, list[float]] = {}
    n = 0
    deadline = time.monotonic() + 120
    while n < total and time.monotonic() < deadline:
        for m in c.consume(num_messages=5000, timeout=1.0):
            if m.error() is not None:
                continue
            n += 1
            env = decode(m.value() or b"", max_size=None)
            if env.id in want:
                out.setdefault(env.id, []).append(m.timestamp()[1] / 1000)
    c.close()
    return out


def count_completed(store: ResultStore, ids: Sequence[str]) -> int:
    return sum(store.count_completed(ids[i : i + 1000]) for i in range(0, len(ids), 1000))


def submit(client: Client, args: argparse.Namespace, rng: random.Random, res: Result) -> None:
    res.submit_start = time.time()
    t0 = time.perf_counter()
    n = 0
    while n < args.tasks:
        k = min(args.chunk, args.tasks - n)
        now = time.time()
        specs = [
            TaskSpec(
                "count",
                kwargs={"n": n + i},
                not_before=now + rng.uniform(args.min_delay, args.max_delay),
            )
            for i in range(k)
        ]
        for h, spec in zip(client.submit_many(specs), specs, strict=True):
            assert spec.not_before is not None
            res.due[h.id] = spec.not_before
        n += k
    res.submit_s = time.perf_counter() - t0
    res.submitted = n


def scenario(
    kind: str, bootstrap: str, redis_url: str, args: argparse.Namespace, log_root: Path
) -> Result:
    ns = f"bench-delays-{kind}-{uuid.uuid4().hex[:8]}"
    s = AppSettings(
        namespace=ns, bootstrap=bootstrap, redis=redis_url, partitions=PARTITIONS, result_ttl=900
    )
    ensure_topics(s)
    env = run.worker_env(s, session_ms=SESSION_MS)
    env["PYTHONPATH"] = str(ROOT)
    log_dir = log_root / ns
    log_dir.mkdir(parents=True)
    res = Result(kind, ns)
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    ws: dict[str, WorkerProc] = {}
    live = {"w1", "w2", "w3"}
    sampler: Sampler | None = None
    try:
        with Client(settings=s) as client:
            store = client.results
            delayed = DelayedSet(store.client, store.prefix)
            for name in sorted(live):
                ws[name] = start_worker(name, env, log_dir, args.concurrency)
            g = wait_group(s, ws, live)
            client.submit("noop").result(timeout=GROUP_TIMEOUT)  # a round trip: all up
            res.leader_before = g.leader
            sampler = Sampler(r, delayed.key)
            sampler.start()
            submit(client, args, random.Random(args.seed), res)
            print(
                f"  {kind}: {res.submitted} tasks submitted in {res.submit_s:.1f}s "
                f"(submit_many, chunks of {args.chunk}); leader {g.leader}, "
                f"generation {g.generation}",
                flush=True,
            )
            ids = list(res.due)
            deadline = max(res.due.values()) + args.timeout
            if kind == "kill":
                # The leader shortly before the kill (gather takes a while on a busy machine).
                time.sleep(max(0.0, res.submit_start + args.kill_after - 2.0 - time.time()))
                g = group_of(s)
                time.sleep(max(0.0, res.submit_start + args.kill_after - time.time()))
                if g.leader not in live:
                    raise RunFailed(f"leader {g.leader!r} is not one of {sorted(live)}")
                other = next(w for w in sorted(live) if w != g.leader)
                victims = [g.leader, other]
                res.leader_before = g.leader
                res.kill_at = time.time()
                for v in victims:
                    ws[v].proc.send_signal(signal.SIGKILL)
                for v in victims:
                    ws[v].proc.wait(10)
                    res.killed.append((v, ws[v].proc.pid))
                live -= set(victims)
                print(
                    f"  kill: SIGKILLed {g.leader} (leader) and {other} "
                    f"{res.kill_at - res.submit_start:.1f}s after the submission began",
                    flush=True,
                )
            while True:
                now = time.time()
                check_alive({n: ws[n] for n in live})
                if (
                    res.kill_at is not None
                    and args.replacement is not None
                    and res.replacement_at is None
                    and now >= res.kill_at + args.replacement
                ):
                    ws["w4"] = start_worker("w4", env, log_dir, args.concurrency)
                    res.replacement_at = now
                    live.add("w4")
                if res.kill_at is not None and res.new_leader is None:
                    try:
                        g = group_of(s)
                        if g.leader in live:
                            res.new_leader, res.new_leader_at = g.leader, time.time()
                    except Exception:  # noqa: BLE001 - mid-rebalance; asked again
                        pass
                res.completed = count_completed(store, ids)
                if res.completed >= len(ids) and (res.kill_at is None or res.new_leader):
                    res.done_at = time.time()
                    break
                if now > deadline:
                    res.note = (
                        f"deadline: {len(ids) - res.completed} tasks without a completion "
                        f"record {args.timeout:.0f}s after the last due time"
                    )
                    break
                time.sleep(0.5)
            time.sleep(QUIET)  # late duplicate runs, if any, are in the log
            res.completed = count_completed(store, ids)
            res.parked_at_end = len(delayed)
    except RunFailed as e:
        res.note = str(e)
    finally:
        if sampler is not None:
            sampler.stop()
            res.samples = sampler.samples
        stop_workers(list(ws.values()))
    try:
        res.on_topic = read_topic(s, res.due)
    except Exception as e:  # noqa: BLE001 - a figure less, said so
        res.note += f" task topic not read: {e}"
    try:
        res.execs = read_execs(r, ns)
        for key in r.scan_iter(match=f"*{ns}*", count=1000):
            r.delete(key)
    finally:
        r.close()
    with open(log_dir / "runs.txt", "w") as fh:  # for a closer look afterwards
        fh.writelines(f"due {t} {d:.6f}\n" for t, d in res.due.items())
        fh.writelines(f"start {x.task} {x.pid} {x.attempt} {x.at:.6f}\n" for x in res.execs)
    for w in ws.values():
        for line in w.text().splitlines():
            if " WARNING " in line or " ERROR " in line or "Traceback" in line:
                res.warnings.append(f"{w.name}: {line}")
    peak = max(res.samples, key=lambda x: x[2], default=None)
    if peak is not None:
        res.parked_peak = (peak[2], peak[0] - res.submit_start)
    if res.kill_at is not None:
        k = res.kill_at
        res.first_produce_at = min(
            (t for v in res.on_topic.values() for t in v if t > k), default=None
        )
        after = [x for x in res.samples if x[0] > k]
        res.overdue_peak = max((due for _, _, due in after), default=0)
        # From the first sample after the kill: a shrink between the last sample before it
        # and the kill is the old leader's.
        for (_, before, _), (at, size, _) in itertools.pairwise(after):
            if size < before:
                res.first_move_at = at
                break
    return res


# --- figures ---------------------------------------------------------------------------------


@dataclass
class Figures:
    tasks: int = 0
    executed: int = 0  # tasks with at least one start
    executions: int = 0
    repeated: int = 0  # tasks started more than once
    extra: int = 0  # starts beyond each task's first
    repeated_after_killed: int = 0  # of `repeated`: an earlier start was on a killed worker
    never: int = 0
    early: int = 0  # tasks with a start before their due time
    early_starts: int = 0
    on_topic_twice: int = 0  # tasks the keeper put on the topic more than once
    not_on_topic: int = 0
    busiest: int = 0  # records put on the topic in the busiest 5 s
    largest_burst: int = 0  # most records with CreateTimes less than 0.1 s apart in a row
    first_start: dict[str, float] = field(default_factory=dict)


def figures(res: Result) -> Figures:
    f = Figures(tasks=len(res.due))
    killed = {pid for _, pid in res.killed}
    by_task: dict[str, list[Exec]] = {}
    for x in res.execs:
        if x.task in res.due:
            by_task.setdefault(x.task, []).append(x)
    f.executed = len(by_task)
    f.never = f.tasks - f.executed
    for task, runs in by_task.items():
        runs.sort(key=lambda x: x.at)
        f.executions += len(runs)
        f.first_start[task] = runs[0].at
        if len(runs) > 1:
            f.repeated += 1
            f.extra += len(runs) - 1
            if any(x.pid in killed for x in runs[:-1]):
                f.repeated_after_killed += 1
        early = [x for x in runs if x.at < res.due[task]]
        if early:
            f.early += 1
            f.early_starts += len(early)
    f.on_topic_twice = sum(1 for v in res.on_topic.values() if len(v) > 1)
    f.not_on_topic = sum(1 for t in res.due if t not in res.on_topic)
    times = sorted(t for v in res.on_topic.values() for t in v)
    j = 0
    burst = 0
    for i, t in enumerate(times):
        while times[j] < t - BUSY_SPAN:
            j += 1
        f.busiest = max(f.busiest, i - j + 1)
        burst = burst + 1 if i and t - times[i - 1] < 0.1 else 1
        f.largest_burst = max(f.largest_burst, burst)
    return f


def windows(kill: Result | None, args: argparse.Namespace) -> tuple[float, float]:
    """The failover window as offsets from the submission start: from the kill until the
    new leader was seen + settle (the baseline's tasks are split at the same offsets)."""
    if kill is not None and kill.kill_at is not None:
        lo = kill.kill_at - kill.submit_start
        # The new leader at work: its first move, else when its generation was seen.
        seen = [
            t
            for t in (kill.first_produce_at, kill.first_move_at, kill.new_leader_at)
            if t is not None
        ]
        end = min(seen) if seen else kill.kill_at
        return lo, end - kill.submit_start + args.settle
    return args.kill_after, args.kill_after + SESSION_MS / 1000 + args.settle


def by_bucket(
    res: Result, window: tuple[float, float], value: Callable[[str, float], float | None]
) -> dict[str, list[float]]:
    """`value(task, due)` of each task (None: left out), split by when the task was due."""
    out: dict[str, list[float]] = {b: [] for b in BUCKETS}
    lo, hi = res.submit_start + window[0], res.submit_start + window[1]
    for task, due in res.due.items():
        v = value(task, due)
        if v is None:
            continue
        bucket = BUCKETS[0] if due < lo else BUCKETS[1] if due < hi else BUCKETS[2]
        out[bucket].append(v)
        out[BUCKETS[3]].append(v)
    return out


def lateness(f: Figures) -> Callable[[str, float], float | None]:
    def value(task: str, due: float) -> float | None:
        start = f.first_start.get(task)
        return None if start is None else start - due

    return value


def to_topic(res: Result) -> Callable[[str, float], float | None]:
    """Due time -> the keeper put the task's first copy on the topic."""

    def value(task: str, due: float) -> float | None:
        copies = res.on_topic.get(task)
        return None if not copies else min(copies) - due

    return value


def topic_to_start(res: Result, f: Figures) -> Callable[[str, float], float | None]:
    """The task's first copy on the topic -> its first start on a worker."""

    def value(task: str, due: float) -> float | None:
        copies, start = res.on_topic.get(task), f.first_start.get(task)
        return None if not copies or start is None else start - min(copies)

    return value


def short_cells(values: Sequence[float]) -> str:
    if not values:
        return f"{'n/a':>7} {'n/a':>7} {'n/a':>7}"
    return " ".join(f"{v:>7.2f}" for v in (pct(values, 50), pct(values, 99), max(values)))


def lat_cells(values: Sequence[float]) -> str:
    if not values:
        return f"{0:>6}  {'n/a':>7} {'n/a':>7} {'n/a':>7} {'n/a':>7}"
    return f"{len(values):>6}  " + " ".join(
        f"{v:>7.2f}" for v in (pct(values, 50), pct(values, 90), pct(values, 99), max(values))
    )


def print_report(results: list[Result], args: argparse.Namespace) -> None:
    kill = next((x for x in results if x.kind == "kill"), None)
    window = windows(kill, args)
    print(
        f"\n== lateness = first start - due time (s); buckets by due time from the submission "
        f"start: before the kill < {window[0]:.1f}s <= failover window < {window[1]:.1f}s <= "
        f"after"
    )
    print(f"{'':30}{'run':10}{'tasks':>6}  {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}")
    figs = {res.kind: figures(res) for res in results}
    lat = {res.kind: by_bucket(res, window, lateness(figs[res.kind])) for res in results}
    for b in BUCKETS:
        for res in results:
            print(f"{b:30}{res.kind:10}{lat_cells(lat[res.kind][b])}")
    print(
        "\n== where it goes: due -> on the task topic (the keeper's produce, the record's "
        "CreateTime) and on the topic -> first start (s)"
    )
    print(
        f"{'':30}{'run':10}{'to topic p50':>13} {'p99':>7} {'max':>7}   "
        f"{'to start p50':>13} {'p99':>7} {'max':>7}"
    )
    for b in BUCKETS:
        for res in results:
            up = by_bucket(res, window, to_topic(res))[b]
            run_ = by_bucket(res, window, topic_to_start(res, figs[res.kind]))[b]
            print(f"{b:30}{res.kind:10}      {short_cells(up)}         {short_cells(run_)}")
    print("\n== every task once, none early")
    rows: list[tuple[str, Callable[[Figures, Result], int]]] = [
        ("tasks submitted", lambda f, r: f.tasks),
        ("tasks executed (at least one start)", lambda f, r: f.executed),
        ("executions (starts)", lambda f, r: f.executions),
        ("tasks run more than once", lambda f, r: f.repeated),
        ("  extra runs", lambda f, r: f.extra),
        ("  of them: an earlier run on a killed worker", lambda f, r: f.repeated_after_killed),
        ("tasks never run", lambda f, r: f.never),
        ("tasks without a completion record", lambda f, r: f.tasks - r.completed),
        ("tasks started before their due time", lambda f, r: f.early),
        ("  starts before the due time", lambda f, r: f.early_starts),
        ("tasks still parked at the end", lambda f, r: r.parked_at_end),
        ("tasks put on the task topic more than once", lambda f, r: f.on_topic_twice),
        ("tasks never on the task topic", lambda f, r: f.not_on_topic),
        ("most tasks due but still parked at one sample", lambda f, r: r.parked_peak[0]),
        (
            f"records put on the topic/s, busiest {BUSY_SPAN:.0f} s",
            lambda f, r: round(f.busiest / BUSY_SPAN),
        ),
        ("largest burst of records (gaps < 0.1 s)", lambda f, r: f.largest_burst),
    ]
    print(f"{'':46}" + "".join(f"{res.kind:>10}" for res in results))
    for label, get in rows:
        print(f"{label:46}" + "".join(f"{get(figs[r.kind], r):>10}" for r in results))
    print(
        f"  (a SIGKILLed worker's tasks begun but not yet recorded may run again: at most "
        f"max(record window {WorkerSettings().record_window}, concurrency) per killed worker, "
        f"DESIGN.md invariant 6; the keeper moves at most {MOVE_BATCH} per look, every "
        f"{MOVE_INTERVAL} s)"
    )
    for res in results:
        done = (
            f"all completed {res.done_at - res.submit_start:.1f}s after the submission began"
            if res.done_at is not None
            else "not all completed"
        )
        done += f"; the most due but parked ({res.parked_peak[0]}) at {res.parked_peak[1]:.1f}s"
        print(f"  {res.kind} {res.namespace}: {done}" + (f"; {res.note}" if res.note else ""))
    if kill is not None and kill.kill_at is not None:
        k = kill.kill_at

        def since(t: float | None) -> str:
            return "n/a" if t is None else f"{t - k:.1f}s"

        f = figs["kill"]
        killed_pids = {pid for _, pid in kill.killed}
        first_after = min(
            (
                x.at
                for x in kill.execs
                if x.task in kill.due and kill.due[x.task] > k and x.pid not in killed_pids
            ),
            default=None,
        )
        print("\n== failover (kill run)")
        print(
            f"  killed: {', '.join(f'{w} (pid {p})' for w, p in kill.killed)}; leader was "
            f"{kill.leader_before}; at {k - kill.submit_start:.1f}s after the submission began"
        )
        print(
            f"  new leader {kill.new_leader} seen (committed generation) after "
            f"{since(kill.new_leader_at)}"
        )
        print(
            f"  delayed set first shrank (first move by the new leader) after "
            f"{since(kill.first_move_at)}"
        )
        print(
            f"  first task put on the topic by the new leader (CreateTime) after "
            f"{since(kill.first_produce_at)}"
        )
        print(f"  first start of a task due after the kill: after {since(first_after)}")
        print(
            f"  most tasks due but still parked at one sample after the kill: {kill.overdue_peak}"
        )
        if kill.replacement_at is not None:
            print(f"  replacement worker w4 started after {since(kill.replacement_at)}")
        if f.repeated:
            print(f"  tasks run more than once (first {min(10, f.repeated)}):")
            by_task: dict[str, list[Exec]] = {}
            for x in kill.execs:
                by_task.setdefault(x.task, []).append(x)
            shown = 0
            for task, runs in by_task.items():
                if len(runs) > 1 and shown < 10:
                    shown += 1
                    lines = "; ".join(
                        f"pid {x.pid} attempt {x.attempt} at {x.at - k:+.2f}s" for x in runs
                    )
                    print(f"    {task} due {kill.due.get(task, 0) - k:+.2f}s: {lines}")
    for res in results:
        f = figs[res.kind]
        if f.early:
            print(f"  {res.kind}: tasks started before their due time (first 10):")
            shown = 0
            for x in res.execs:
                if x.task in res.due and x.at < res.due[x.task] and shown < 10:
                    shown += 1
                    print(
                        f"    {x.task} pid {x.pid} attempt {x.attempt} started "
                        f"{res.due[x.task] - x.at:.3f}s early"
                    )
        if f.never:
            missing = [t for t in res.due if t not in f.first_start][:10]
            print(f"  {res.kind}: never run (first 10): {' '.join(missing)}")
        if res.warnings:
            print(f"  {res.kind}: {len(res.warnings)} WARNING/ERROR lines in worker logs, e.g.:")
            for line in res.warnings[:5]:
                print(f"    {line[:220]}")


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kafka", default=os.environ.get("RINGLEADER_TEST_KAFKA"))
    ap.add_argument("--redis", default=os.environ.get("RINGLEADER_TEST_REDIS"))
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--min-delay", type=float, default=1.0, help="seconds (default 1)")
    ap.add_argument("--max-delay", type=float, default=20.0, help="seconds (default 20)")
    ap.add_argument("--chunk", type=int, default=1000, help="tasks per submit_many call")
    ap.add_argument("--concurrency", type=int, default=4, help="threads per worker")
    ap.add_argument("--kill-after", type=float, default=5.0, help="s after submission began")
    ap.add_argument(
        "--replacement", type=float, default=None, help="start a 4th worker this many s after"
    )
    ap.add_argument("--settle", type=float, default=3.0, help="failover window: new leader +")
    ap.add_argument("--timeout", type=float, default=120.0, help="s after the last due time")
    ap.add_argument("--no-baseline", action="store_true", help="only the kill run")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    if not args.kafka or not args.redis:
        ap.error("give --kafka and --redis (or RINGLEADER_TEST_KAFKA / RINGLEADER_TEST_REDIS)")
    if not 0.5 < args.min_delay <= args.max_delay:
        ap.error("need 0.5 < --min-delay <= --max-delay (sooner goes to the broker at once)")

    tmp = Path(tempfile.mkdtemp(prefix="bench-delays-"))
    started = time.monotonic()
    load0 = os.getloadavg()
    print(
        f"bench_delays {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; logs in {tmp}"
    )
    print(
        f"  Kafka {args.kafka}; {PARTITIONS} partitions; 3 workers x {args.concurrency} "
        f"threads, session timeout {SESSION_MS / 1000:.0f} s; keeper looks every "
        f"{MOVE_INTERVAL} s; {args.tasks} tasks due {args.min_delay:g}-{args.max_delay:g} s "
        f"after submission; kill run: leader + one other SIGKILLed {args.kill_after:g} s after "
        f"the submission began"
        + (f", replacement after {args.replacement:g} s" if args.replacement is not None else "")
    )
    kinds = ["kill"] if args.no_baseline else ["baseline", "kill"]
    results: list[Result] = []
    try:
        for kind in kinds:
            res = scenario(kind, args.kafka, args.redis, args, tmp)
            results.append(res)
            print(
                f"  {kind} done ({time.monotonic() - started:.0f}s in)"
                + (f": {res.note}" if res.note else ""),
                flush=True,
            )
        print_report(results, args)
    finally:
        load1 = os.getloadavg()
        print(
            f"\ntotal {time.monotonic() - started:.0f}s; load average at the end "
            f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
