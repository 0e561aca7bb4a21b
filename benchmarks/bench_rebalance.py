"""Work lost to rebalancing, eager against cooperative, with worker OS processes (prints figures,
asserts nothing).

Per broker (Apache Kafka, Tansu) and per protocol (RINGLEADER_REBALANCE_PROTOCOL eager and
cooperative, alternated in the same run, each in a fresh namespace): 3 worker processes
(`python -m ringleader.worker.run benchmarks.rebalance_app:app`, 4 threads each) settle on 12
partitions; a producer then writes `nap` tasks (sleep 50-200 ms) round-robin over the
partitions at a steady 70/s, below what 3 workers run (~96/s), so a stall shows as tasks
waiting and a backlog. After a steady phase a 4th worker joins; once the group has settled
and caught up, another steady phase, then one of the first three (not the leader) is
SIGKILLed. For each event:
* tasks/s done in the 10 s from 1 s before it to 9 s after (against the steady rate just
  before); the longest time in that window with no task done anywhere, and the longest a
  worker that stayed did none; submit-to-done p99/max of the tasks sent in the window;
* partitions stopped by workers that stayed (their "revoking"/"releasing" log lines), and
  owner changes through the committed generations on `<ns>.assignments`, against the fewest
  owner changes that balance the group; generations until settled and when all applied it;
* tasks begun on a worker that stayed and started again (executions > 1: invariant 6 rules
  that out), and (kill) the SIGKILLed worker's in-flight tasks and when they began again.
Session timeout 6 s (heartbeat 0.5 s, self-fencing 2 s before), as in the tests, so a kill
is noticed after ~6 s. Crash quarantine stays on (the default): a killed worker's in-flight
task runs again alone on its new owner.

Services: pass `--kafka BOOTSTRAP --tansu BOOTSTRAP --redis URL`; each one not given is
started with `ringleader local up` in a temporary directory and stopped afterwards.

    .venv/bin/python benchmarks/bench_rebalance.py [--quick] \\
        [--kafka K] [--tansu T] [--redis R] [--brokers kafka,tansu] [--rounds N]

A full run (2 rounds per broker, eager and cooperative alternated ABBA) takes ~5-6 minutes;
`--quick` (1 round, 3 s steady phases instead of 5 s) ~2 minutes.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import os
import platform
import random
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._workers import (  # noqa: E402
    WorkerProc,
    log_time,
    pct,
    start_worker,
    stop_workers,
)
from ringleader.coordinator.assignment import Assignment  # noqa: E402
from ringleader.coordinator.twophase import Applied  # noqa: E402
from ringleader.coordinator.txlog import TxLogError, TxLogReader  # noqa: E402
from ringleader.local import services  # noqa: E402
from ringleader.worker import run  # noqa: E402
from ringleader.worker.envelope import Envelope, encode, new_task_id  # noqa: E402
from ringleader.worker.namespace import ensure_topics  # noqa: E402
from ringleader.worker.routing import topics  # noqa: E402
from ringleader.worker.settings import AppSettings  # noqa: E402

APP = "benchmarks.rebalance_app:app"
PARTITIONS = 12
CONCURRENCY = 4
NAP_MS = (50, 200)
SESSION_MS = 6000
WINDOW = (-1.0, 9.0)  # seconds around an event over which its figures are taken
SETTLE_TIMEOUT = 60.0
TAIL = 25.0  # at most this long after a kill: its in-flight tasks begun again, backlog done
PROTOCOLS = ("eager", "cooperative")


def starts_key(ns: str) -> str:
    """Where benchmarks/rebalance_app.py records each start (not imported: it builds an App)."""
    return f"{ns}:bench:starts"


def ends_key(ns: str) -> str:
    return f"{ns}:bench:ends"


# --- services --------------------------------------------------------------------------------


@contextmanager
def local_stack(what: str, tmp: Path) -> Iterator[str]:
    """`ringleader local up --<what> --dir <tmp>/<what>`; yields its address; down afterwards."""
    d = tmp / f"local-{what}"
    t0 = time.monotonic()
    stack = services.up(
        d, kafka_nodes=1 if what == "kafka" else 0, tansu=what == "tansu", redis=what == "redis"
    )
    try:
        addr = stack.redis if what == "redis" else stack.bootstrap
        assert addr is not None
        took = time.monotonic() - t0
        print(f"  started {what} with `ringleader local up` ({addr}) in {took:.0f}s")
        yield addr
    finally:
        services.down(d)


# --- load ------------------------------------------------------------------------------------


class Load(threading.Thread):
    """Produces `nap` envelopes round-robin over the partitions at `rate` per second."""

    def __init__(self, s: AppSettings, rate: float, seed: int) -> None:
        super().__init__(name="bench-load", daemon=True)
        self.s, self.rate, self.seed = s, rate, seed
        self.produced = 0
        self.sent: list[tuple[str, float]] = []  # task id, wall time it was produced
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        topic = topics(self.s.namespace).tasks
        p = Producer({"bootstrap.servers": self.s.bootstrap, "linger.ms": 5, "acks": "all"})
        rng = random.Random(self.seed)

        def cb(err: object, msg: object) -> None:
            if err is not None:
                self.errors.append(str(err))

        t0 = time.monotonic()
        while not self._stop_event.wait(0.01):
            due = int((time.monotonic() - t0) * self.rate)
            while self.produced < due:
                env = Envelope(
                    id=new_task_id(),
                    name="nap",
                    kwargs={"ms": rng.randint(*NAP_MS)},
                    submitted_at=time.time(),
                )
                try:
                    p.produce(
                        topic,
                        value=encode(env),
                        partition=self.produced % PARTITIONS,
                        on_delivery=cb,
                    )
                except BufferError:
                    break
                self.produced += 1
                self.sent.append((env.id, env.submitted_at))
            p.poll(0)
        p.flush(30)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(60)


# --- committed generations -------------------------------------------------------------------


class Ledger:
    """Every generation committed on `<ns>.assignments`, in log order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._reader = TxLogReader(bootstrap, topic, "assign")
        self.generations: list[Assignment] = []

    def refresh(self) -> list[Assignment]:
        try:
            outcomes = self._reader.read_available(10)
        except TxLogError:
            return self.generations  # not readable yet (a new topic): next time
        for o in outcomes:
            if isinstance(o, Applied):
                self.generations.append(Assignment.from_parts(o.parts))
        return self.generations

    def close(self) -> None:
        self._reader.close()


def owners_by_partition(a: Assignment) -> dict[int, str]:
    return {p: w for w, ps in a.by_worker().items() for p in ps}


def owner_changes(before: Assignment, gens: Sequence[Assignment]) -> int:
    """Partitions handed to a worker other than their last owner, through the generations (a
    partition owned by nobody between its release and its new owner is one change)."""
    owner = owners_by_partition(before)
    n = 0
    for a in gens:
        for p, w in owners_by_partition(a).items():
            if owner.get(p, w) != w:
                n += 1
            owner[p] = w
    return n


def min_owner_changes(before: Assignment, members: set[str]) -> int:
    """The fewest owner changes that balance `members`: the partitions of workers that left,
    plus those the members owning the most must give up (larger quotas go to them)."""
    owned = before.by_worker()
    departed = sum(len(ps) for w, ps in owned.items() if w not in members)
    base, extra = divmod(PARTITIONS, len(members))
    counts = sorted((len(owned.get(w, [])) for w in members), reverse=True)
    excess = sum(max(0, c - (base + (1 if i < extra else 0))) for i, c in enumerate(counts))
    return departed + excess


# --- worker processes ------------------------------------------------------------------------


_STOP = re.compile(r" (revoking|releasing) (\[[\d, ]*\])")
_APPLIED = re.compile(r" generation (\d+) applied: partitions")


def stopped_partitions(w: WorkerProc, since: float, until: float) -> int:
    """Partitions the worker revoked or released (log lines) between two wall times."""
    n = 0
    for line in w.text().splitlines():
        m = _STOP.search(line)
        t = log_time(line)
        if m and t is not None and since <= t < until:
            n += len(ast.literal_eval(m.group(2)))
    return n


def applied_at(w: WorkerProc, generation: int) -> float | None:
    for line in w.text().splitlines():
        m = _APPLIED.search(line)
        if m and int(m.group(1)) == generation:
            return log_time(line)
    return None


class NotSettled(Exception):
    pass


def settled(
    ledger: Ledger, ws: Mapping[str, WorkerProc], expected: set[str], protocol: str
) -> Assignment | None:
    """The newest committed generation if it is the settled one for `expected`: every
    partition owned once, balanced, nothing being revoked, applied by each of them."""
    gens = ledger.refresh()
    if not gens:
        return None
    a = gens[-1]
    if a.protocol != protocol or set(a.workers.values()) != expected:
        return None
    if a.revoking or len(a.workers) != len(a.owners):
        return None
    if sorted(p for ps in a.owners.values() for p in ps) != list(range(PARTITIONS)):
        return None
    counts = [len(ps) for ps in a.owners.values()]
    if max(counts) - min(counts) > 1:
        return None
    if any(applied_at(ws[w], a.generation) is None for w in expected):
        return None
    return a


def wait_settled(
    ledger: Ledger, ws: Mapping[str, WorkerProc], expected: set[str], protocol: str
) -> Assignment:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        a = settled(ledger, ws, expected, protocol)
        if a is not None:
            return a
        dead = [w.name for w in ws.values() if w.name in expected and w.proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            why = f"{dead} exited" if dead else f"not within {SETTLE_TIMEOUT:.0f}s"
            raise NotSettled(f"{sorted(expected)} did not settle ({why})")
        time.sleep(0.25)


# --- one scenario ----------------------------------------------------------------------------


@dataclass
class Event:
    what: str  # join | kill
    at: float  # wall time
    mark: int  # generations committed before it
    before: Assignment
    stayed: set[str]  # workers there before and after
    members: set[str]  # workers after
    end: float = 0.0  # wall time the next phase starts
    after: Assignment | None = None
    settled_index: int = -1


@dataclass
class Figures:
    """One event's figures (None: not measured, e.g. the group did not settle)."""

    baseline: float | None = None  # tasks/s in the steady phase just before
    rate: float | None = None
    gap: float | None = None
    idle: float | None = None  # the longest a worker that stayed completed nothing
    wait_p99: float | None = None  # submit -> done of the tasks sent in the window
    wait_max: float | None = None
    undone: int | None = None  # tasks sent in the window not done by the end
    stopped: int | None = None
    changes: int | None = None
    minimum: int | None = None
    generations: int | None = None
    settle_s: float | None = None
    restarted_stayed: int | None = None
    inflight_killed: int | None = None
    rerun_killed: int | None = None
    rerun_after: float | None = None


@dataclass
class Result:
    protocol: str
    namespace: str
    events: dict[str, Figures] = field(default_factory=dict)
    note: str = ""
    produced: int = 0
    completed: int = 0
    never_ended: int = 0
    refused: int = 0  # "offset commit refused" lines in the workers' logs
    skipped: int = 0  # tasks the workers skipped as already completed (redelivered)
    alone: int = 0  # tasks run again alone (they had crashed a worker)


@dataclass(frozen=True)
class Run:
    task: str
    pid: int
    at: float


def read_runs(r: redis.Redis[bytes], key: str) -> list[Run]:
    out = []
    for raw in r.lrange(key, 0, -1):
        task, pid, at = raw.decode().split()
        out.append(Run(task, int(pid), float(at)))
    return out


def in_window(runs: Sequence[Run], lo: float, hi: float) -> list[Run]:
    return [x for x in runs if lo <= x.at < hi]


def longest_gap(times: Sequence[float], lo: float, hi: float) -> float:
    pts = [lo, *sorted(t for t in times if lo <= t < hi), hi]
    return max(b - a for a, b in itertools.pairwise(pts))


def lost_to_kill(r: redis.Redis[bytes], ns: str, pid: int) -> tuple[set[str], set[str]]:
    """The killed worker's runs that never ended, and those of them begun again elsewhere."""
    starts, ends = read_runs(r, starts_key(ns)), read_runs(r, ends_key(ns))
    lost = {x.task for x in starts if x.pid == pid} - {x.task for x in ends if x.pid == pid}
    again = {x.task for x in starts if x.pid != pid and x.task in lost}
    return lost, again


def log_count(ws: Mapping[str, WorkerProc], pattern: str) -> int:
    return sum(w.text().count(pattern) for w in ws.values())


def skipped_total(ws: Mapping[str, WorkerProc]) -> int:
    """Sum of each worker's last "executed N, skipped M" figure (logged every few seconds)."""
    n = 0
    for w in ws.values():
        found = re.findall(r"executed \d+, skipped (\d+)", w.text())
        n += int(found[-1]) if found else 0
    return n


def wait_caught_up(r: redis.Redis[bytes], ns: str, load: Load, timeout: float = 20.0) -> None:
    """Until the tasks not yet done are half a second's worth (a backlog left by a rebalance
    is worked off), so that the steady phase before an event is steady."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and load.produced - r.llen(ends_key(ns)) > load.rate / 2:
        time.sleep(0.25)


def scenario(
    bootstrap: str, redis_url: str, protocol: str, args: argparse.Namespace, log_root: Path
) -> Result:
    ns = f"bench-reb-{protocol[:4]}-{uuid.uuid4().hex[:8]}"
    s = AppSettings(
        namespace=ns, bootstrap=bootstrap, redis=redis_url, partitions=PARTITIONS, result_ttl=900
    )
    ensure_topics(s)
    env = run.worker_env(s, session_ms=SESSION_MS)
    env.update({"PYTHONPATH": str(ROOT), "RINGLEADER_REBALANCE_PROTOCOL": protocol})
    log_dir = log_root / ns
    log_dir.mkdir(parents=True)
    result = Result(protocol, ns)
    ledger = Ledger(bootstrap, topics(ns).assignments)
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    load = Load(s, args.rate, seed=1)
    ws: dict[str, WorkerProc] = {}
    events: list[Event] = []
    victim_pid = -1
    t_stop = 0.0
    try:
        for w in ("w1", "w2", "w3"):
            ws[w] = start_worker(w, env, log_dir, CONCURRENCY, app=APP)
        first = {"w1", "w2", "w3"}
        a = wait_settled(ledger, ws, first, protocol)
        load.start()  # from here on: no backlog from the group's start
        wait_caught_up(r, ns, load)
        time.sleep(args.steady)
        join = Event("join", time.time(), len(ledger.refresh()), a, set(first), first | {"w4"})
        events.append(join)
        ws["w4"] = start_worker("w4", env, log_dir, CONCURRENCY, app=APP)
        join.after = wait_settled(ledger, ws, join.members, protocol)
        join.settled_index = len(ledger.generations) - 1
        time.sleep(max(0.0, join.at + WINDOW[1] - time.time()))
        wait_caught_up(r, ns, load)
        time.sleep(args.steady)
        leader = join.after.workers.get(join.after.leader)
        victim = next(w for w in ("w2", "w3", "w1") if w != leader)
        stayed = join.members - {victim}
        kill = Event("kill", time.time(), len(ledger.refresh()), join.after, stayed, stayed)
        events.append(kill)
        victim_pid = ws[victim].proc.pid
        ws[victim].proc.send_signal(signal.SIGKILL)
        ws[victim].proc.wait(10)
        kill.after = wait_settled(ledger, ws, kill.members, protocol)
        kill.settled_index = len(ledger.generations) - 1
        time.sleep(max(0.0, kill.at + WINDOW[1] - time.time()))
        # Then until the killed worker's in-flight tasks have begun again and the tasks sent
        # in the window are done (bounded), for their submit-to-done times.
        window = {task for task, t in list(load.sent) if t < kill.at + WINDOW[1]}
        while time.time() < kill.at + TAIL:
            in_flight, begun = lost_to_kill(r, ns, victim_pid)
            if in_flight <= begun and window <= {x.task for x in read_runs(r, ends_key(ns))}:
                break
            time.sleep(0.5)
    except NotSettled as e:
        result.note = str(e)
    finally:
        t_stop = time.time()
        if load.is_alive():
            load.stop()
        stop_workers(list(ws.values()))
        ledger.refresh()
        ledger.close()
    result.produced = load.produced
    if load.errors:
        result.note += f" producer errors: {load.errors[:2]}"
    result.refused = log_count(ws, "offset commit refused")
    result.alone = log_count(ws, "running it again, alone")
    result.skipped = skipped_total(ws)

    try:
        starts = read_runs(r, starts_key(ns))
        ends = read_runs(r, ends_key(ns))
        for key in r.scan_iter(match=f"*{ns}*", count=1000):
            r.delete(key)
    finally:
        r.close()
    with open(log_dir / "runs.txt", "w") as fh:  # for a closer look afterwards
        fh.writelines(f"start {x.task} {x.pid} {x.at:.6f}\n" for x in starts)
        fh.writelines(f"end {x.task} {x.pid} {x.at:.6f}\n" for x in ends)
    result.completed = len(ends)
    ended = {(x.task, x.pid) for x in ends}
    result.never_ended = sum(
        1 for x in starts if x.pid != victim_pid and (x.task, x.pid) not in ended
    )
    first_end: dict[str, float] = {}
    for x in ends:
        first_end[x.task] = min(x.at, first_end.get(x.task, x.at))
    by_task: dict[str, list[Run]] = {}
    for x in starts:
        by_task.setdefault(x.task, []).append(x)
    # Each start after a task's first: when it began again, and who ran it before.
    again = [
        (runs[i].at, runs[i - 1].pid)
        for runs in (sorted(v, key=lambda x: x.at) for v in by_task.values())
        for i in range(1, len(runs))
    ]
    for i, ev in enumerate(events):
        ev.end = events[i + 1].at if i + 1 < len(events) else t_stop
        f = Figures()
        result.events[ev.what] = f
        f.baseline = len(in_window(ends, ev.at - args.steady, ev.at)) / args.steady
        lo, hi = ev.at + WINDOW[0], ev.at + WINDOW[1]
        if hi <= t_stop:
            done = in_window(ends, lo, hi)
            f.rate = len(done) / (hi - lo)
            f.gap = longest_gap([x.at for x in done], lo, hi)
            pids = {ws[w].proc.pid for w in ev.stayed}
            f.idle = max(longest_gap([x.at for x in done if x.pid == p], lo, hi) for p in pids)
            sent = [(task, t) for task, t in load.sent if lo <= t < hi]
            waits = [first_end[task] - t for task, t in sent if task in first_end]
            f.undone = len(sent) - len(waits)
            if waits:
                f.wait_p99, f.wait_max = pct(waits, 99), max(waits)
        f.stopped = sum(stopped_partitions(ws[w], ev.at, ev.end) for w in ev.stayed)
        survivors = {ws[w].proc.pid for w in ev.stayed}
        f.restarted_stayed = sum(1 for t, pid in again if pid in survivors and ev.at <= t < ev.end)
        if ev.what == "kill":
            lost = {x.task for x in starts if x.pid == victim_pid} - {
                t for t, pid in ended if pid == victim_pid
            }
            rerun = [
                min(x.at for x in by_task[task] if x.pid != victim_pid)
                for task in lost
                if any(x.pid != victim_pid for x in by_task[task])
            ]
            f.inflight_killed, f.rerun_killed = len(lost), len(rerun)
            f.rerun_after = max(rerun) - ev.at if rerun else None
        if ev.after is None:
            continue
        gens = ledger.generations[ev.mark : ev.settled_index + 1]
        f.changes = owner_changes(ev.before, gens)
        f.minimum = min_owner_changes(ev.before, ev.members)
        f.generations = len(gens)
        applied = [applied_at(ws[w], ev.after.generation) for w in ev.members]
        if all(t is not None for t in applied):
            f.settle_s = max(t for t in applied if t is not None) - ev.at
    return result


# --- output ----------------------------------------------------------------------------------


def fmt(values: list[str]) -> str:
    return " | ".join(values)


def _num(v: float | int | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


ROWS: list[tuple[str, str, str]] = [
    # (event, label, how)
    ("join", "steady tasks/s before, 3 workers", "baseline"),
    ("join", "join: tasks/s in [-1 s, +9 s] (vs steady)", "rate"),
    ("join", "join: longest gap, no completion anywhere (s)", "gap"),
    ("join", "join: longest a worker that stayed completed nothing (s)", "idle"),
    ("join", "join: submit-to-done p99/max, sent in the window (s)", "wait"),
    ("join", "join: partitions stopped on workers that stayed", "stopped"),
    ("join", "join: owner changes (minimum for balance)", "changes"),
    ("join", "join: generations, all applied after (s)", "settle"),
    ("join", "join: tasks restarted that began on a worker that stayed", "restarted_stayed"),
    ("kill", "steady tasks/s before, 4 workers", "baseline"),
    ("kill", "kill: tasks/s in [-1 s, +9 s] (vs steady)", "rate"),
    ("kill", "kill: longest gap, no completion anywhere (s)", "gap"),
    ("kill", "kill: longest a worker that stayed completed nothing (s)", "idle"),
    ("kill", "kill: submit-to-done p99/max, sent in the window (s)", "wait"),
    ("kill", "kill: partitions stopped on workers that stayed", "stopped"),
    ("kill", "kill: owner changes (minimum for balance)", "changes"),
    ("kill", "kill: generations, all applied after (s)", "settle"),
    ("kill", "kill: tasks restarted that began on a worker that stayed", "restarted_stayed"),
    ("kill", "kill: killed worker's in-flight tasks, begun again (latest, s)", "rerun"),
]


def cell(f: Figures | None, how: str) -> str:
    if f is None:
        return "n/a"
    if how == "baseline":
        return _num(f.baseline, ".0f")
    if how == "rate":
        if f.rate is None or not f.baseline:
            return _num(f.rate, ".0f")
        return f"{f.rate:.0f} ({f.rate / f.baseline:.0%})"
    if how == "wait":
        undone = f" ({f.undone} not done)" if f.undone else ""
        return f"{_num(f.wait_p99, '.1f')}/{_num(f.wait_max, '.1f')}{undone}"
    if how in ("gap", "idle"):
        return _num(getattr(f, how), ".2f")
    if how == "rerun":
        after = f" ({f.rerun_after:.1f})" if f.rerun_after is not None else ""
        return f"{_num(f.inflight_killed, 'd')}, {_num(f.rerun_killed, 'd')}{after}"
    if how == "changes":
        return f"{_num(f.changes, 'd')} ({_num(f.minimum, 'd')})"
    if how == "settle":
        return f"{_num(f.generations, 'd')}, {_num(f.settle_s, '.1f')}"
    v = getattr(f, how)
    return _num(v, "d")


def print_table(kind: str, bootstrap: str, results: list[Result]) -> None:
    by_proto = {p: [r for r in results if r.protocol == p] for p in PROTOCOLS}
    width = max(len(label) for _, label, _ in ROWS) + 2
    cols = {
        p: max(
            [len(p)]
            + [len(fmt([cell(r.events.get(ev), how) for r in by_proto[p]])) for ev, _, how in ROWS]
        )
        + 3
        for p in PROTOCOLS
    }
    print(f"\n== {kind} ({bootstrap}): eager vs cooperative" + (
        f", {len(by_proto['eager'])} runs each (values per run in run order, a | b)"
        if len(by_proto["eager"]) > 1 else ""
    ))  # fmt: skip
    print(" " * width + "".join(p.ljust(cols[p]) for p in PROTOCOLS))
    for ev, label, how in ROWS:
        line = label.ljust(width)
        for p in PROTOCOLS:
            line += fmt([cell(r.events.get(ev), how) for r in by_proto[p]]).ljust(cols[p])
        print(line.rstrip())
    for r in results:
        extra = f"; {r.note.strip()}" if r.note else ""
        print(
            f"  {r.protocol:11} {r.namespace}: {r.produced} produced, {r.completed} done, "
            f"{r.never_ended} begun on a worker that stayed and never ended; worker logs: "
            f"{r.refused} offset commits refused, {r.skipped} skipped as already completed, "
            f"{r.alone} run again alone{extra}"
        )


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kafka", help="Apache Kafka bootstrap (default: start one)")
    ap.add_argument("--tansu", help="Tansu bootstrap (default: start one)")
    ap.add_argument("--redis", help="Redis URL (default: start one)")
    ap.add_argument("--brokers", default="kafka,tansu")
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s steady phases (~2 min)")
    ap.add_argument("--rounds", type=int, help="eager+cooperative pairs per broker (default 2)")
    ap.add_argument("--steady", type=float, help="seconds of steady load before each event")
    ap.add_argument("--rate", type=float, default=70.0, help="tasks/s produced")
    args = ap.parse_args()
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.steady is None:
        args.steady = 3.0 if args.quick else 5.0
    brokers = [b for b in args.brokers.split(",") if b]
    if not set(brokers) <= {"kafka", "tansu"}:
        ap.error("--brokers takes kafka and/or tansu")

    tmp = Path(tempfile.mkdtemp(prefix="bench-rebalance-"))
    started = time.monotonic()
    load0 = os.getloadavg()
    capacity = CONCURRENCY * 1000 / (sum(NAP_MS) / 2)
    print(
        f"bench_rebalance {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
        f"logs in {tmp}"
    )
    print(
        f"  {PARTITIONS} partitions; workers: {CONCURRENCY} threads each, session timeout "
        f"{SESSION_MS / 1000:.0f} s, heartbeat 0.5 s (so a SIGKILL is noticed after ~6 s); "
        f"tasks sleep {NAP_MS[0]}-{NAP_MS[1]} ms (~{capacity:.0f} tasks/s per worker at most); "
        f"producer {args.rate:.0f} tasks/s, steady, below what 3 workers can run"
    )
    print(
        f"  3 workers settle, the producer starts, {args.steady:.0f} s steady, a 4th joins; "
        f"settled and caught up, {args.steady:.0f} s steady, one of the first three (not the "
        f"leader) is SIGKILLed; {args.rounds} round(s) per broker, eager and cooperative "
        f"alternated (ABBA); figures over [{WINDOW[0]:+.0f} s, {WINDOW[1]:+.0f} s] of each event"
    )
    try:
        with nullcontext(args.redis) if args.redis else local_stack("redis", tmp) as rurl:
            for b, kind in enumerate(brokers):
                given = getattr(args, kind)
                with nullcontext(given) if given else local_stack(kind, tmp) as bootstrap:
                    results: list[Result] = []
                    for i in range(args.rounds):
                        order = PROTOCOLS if (i + b) % 2 == 0 else PROTOCOLS[::-1]
                        for protocol in order:
                            r = scenario(bootstrap, rurl, protocol, args, tmp)
                            j, k = r.events.get("join"), r.events.get("kill")
                            print(
                                f"  {kind} {protocol}: join {cell(j, 'rate')} tasks/s, gap "
                                f"{cell(j, 'gap')} s; kill {cell(k, 'rate')} tasks/s, gap "
                                f"{cell(k, 'gap')} s ({time.monotonic() - started:.0f}s in)"
                                + (f"; {r.note}" if r.note else "")
                            )
                            results.append(r)
                    print_table(kind, bootstrap, results)
    finally:
        load1 = os.getloadavg()
        print(
            f"\ntotal {time.monotonic() - started:.0f}s; load average at the end "
            f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
