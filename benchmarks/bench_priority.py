"""High-priority tasks behind a normal backlog, with worker OS processes (prints figures,
asserts nothing).

The issue: "100,000 normal tasks queued, then 100 high-priority tasks: the high ones start
within 1 s each (benchmark prints p50/p99 wait), and the throughput of the normal ones is
within the run-to-run spread when no high-priority task is present".

One trial, in a fresh namespace (`ensure_topics`: `<ns>.tasks`, `.tasks.high`, `.tasks.low`):
2 worker processes (`python -m ringleader.worker.run tests.worker.apps.counting:app`, 8
threads each, other settings the defaults) settle on the partitions; then N `count` tasks
(the counting app records each execution start in Redis: `<ns>:log` lines "task_id pid
attempt wall_time", `<ns>:execs` task id -> starts) are submitted at the default priority
with `Client.submit_many` in chunks, so a backlog waits on the broker. `--high-after` s after
the first normal task started, H `count` tasks with `priority=1` (topic `<ns>.tasks.high`)
are submitted one `Client.submit` call each, `--high-every` s apart (from a second client,
in a thread, while the backlog drains). A high task's wait = its first start (`<ns>:log`) -
the wall time just before its submit call; alongside, the normal tasks started before it
started, those started while it waited, and the normal backlog when it was submitted
(normal tasks acknowledged by the broker - started).

Trial kinds, interleaved (ABCABC...), `--trials` of each, on the same brokers:
* A "old": the normal workload alone, the workers running the code of `--baseline-rev`
  (default 02c20ee~1, the commit before priority levels) from a temporary git worktree (cwd
  and PYTHONPATH; the header and each row say which code the workers imported);
* B "new": the normal workload alone, the current code;
* C "new+high": the current code, with the high tasks.
Normal throughput = N / (last normal start - first normal start). Every task must run once:
per trial, tasks never started ("lost") and started more than once, from `<ns>:log` and
`<ns>:execs` (the two are checked against each other).

    source /tmp/rl-env.sh   # RINGLEADER_TEST_KAFKA, RINGLEADER_TEST_REDIS
    .venv/bin/python benchmarks/bench_priority.py [--tasks 100000] [--high 100] \\
        [--high-after 2] [--high-every 0.1] [--trials 3] [--baseline-rev 02c20ee~1] \\
        [--no-baseline] [--workers 2] [--concurrency 8]

Brokers are not started or stopped here: `--kafka`/`--redis`, else RINGLEADER_TEST_KAFKA and
RINGLEADER_TEST_REDIS. Worker logs stay in a temporary directory printed in the header; the
namespace's `<ns>:log` and `<ns>:execs` keys are left to expire after an hour.
"""

from __future__ import annotations

import argparse
import bisect
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._workers import (  # noqa: E402
    Exec,
    RunFailed,
    WorkerProc,
    check_alive,
    code_origin,
    execs_key,
    log_key,
    pct,
    read_exec_counts,
    read_execs,
    start_worker,
    stop_workers,
    wait_group,
)
from ringleader.client import Client, TaskSpec  # noqa: E402
from ringleader.redisurl import redact  # noqa: E402
from ringleader.worker import run  # noqa: E402
from ringleader.worker.namespace import ensure_topics  # noqa: E402
from ringleader.worker.settings import AppSettings, WorkerSettings  # noqa: E402

OLD, NEW, HIGH = "old", "new", "new+high"
# The current fetcher's log line when it starts fetching a generation's partitions; the code
# before priority levels logs the same line without this ending.
LEVELS_MARK = "(and their priority levels)"
GROUP_TIMEOUT = 120.0
QUIET = 2.0  # seconds waited after the last first start, for late duplicate runs
KEEP_KEYS = 3600  # seconds the namespace's execution log stays in Redis afterwards


def git(*argv: str, cwd: Path = ROOT) -> str:
    out = subprocess.run(
        ["git", *argv], cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip()


# --- one trial -------------------------------------------------------------------------------


@dataclass
class High:
    id: str
    before: float  # wall time just before its submit call
    after: float  # wall time the call returned (the broker acknowledged it)
    start: float | None = None  # its first start
    pid: int | None = None  # the worker process of its first start
    normals_before: int = 0  # normal tasks started before it started
    normals_during: int = 0  # ... of them, started after its submit call began
    backlog: int = 0  # normal tasks acknowledged by the broker but not started, at `before`

    @property
    def wait(self) -> float | None:
        return None if self.start is None else self.start - self.before


@dataclass
class Trial:
    kind: str
    index: int
    namespace: str
    log_dir: Path
    origin: str = ""  # the files the workers' Python imports ringleader from
    code: str = "?"  # old | new, from the workers' logs
    normal_ids: list[str] = field(default_factory=list)
    chunks: list[tuple[float, int]] = field(default_factory=list)  # (acked at, cumulative)
    submit_start: float = 0.0
    submit_end: float = 0.0
    highs: list[High] = field(default_factory=list)
    first_normal: float | None = None
    last_normal: float | None = None
    started: int = 0  # normal tasks started at least once
    lost: int = 0  # tasks (normal and high) never started
    twice: int = 0  # tasks started more than once
    extra: int = 0  # starts beyond each task's first
    mismatch: int = 0  # tasks whose <ns>:execs count differs from their <ns>:log lines
    pids: dict[int, str] = field(default_factory=dict)  # worker pid -> name
    note: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.first_normal is None or self.last_normal is None:
            return None
        return self.last_normal - self.first_normal

    @property
    def throughput(self) -> float | None:
        d = self.duration
        return None if not d else len(self.normal_ids) / d

    def waits(self) -> list[float]:
        return [w for h in self.highs if (w := h.wait) is not None]


class HighSubmitter(threading.Thread):
    """Waits for the first normal start, then submits the high tasks on their schedule."""

    def __init__(self, client: Client, r: redis.Redis[bytes], ns: str, args: argparse.Namespace):
        super().__init__(name="bench-high", daemon=True)
        self._client, self._r, self._ns, self._args = client, r, ns, args
        self.highs: list[High] = []
        self.error: BaseException | None = None
        self.abort = threading.Event()

    def run(self) -> None:
        try:
            first = self._first_start()
            if first is None:
                return
            t0 = first + self._args.high_after
            for i in range(self._args.high):
                delay = t0 + i * self._args.high_every - time.time()
                if self.abort.wait(max(0.0, delay)):
                    return
                before = time.time()
                h = self._client.submit("count", kwargs={"n": -1 - i}, priority=1)
                self.highs.append(High(h.id, before, time.time()))
        except BaseException as e:  # noqa: BLE001 - reported by the trial
            self.error = e

    def _first_start(self) -> float | None:
        key = log_key(self._ns)
        deadline = time.monotonic() + GROUP_TIMEOUT
        while not self.abort.is_set():
            raw = self._r.lindex(key, 0)
            if raw is not None:
                return float(raw.split()[3])
            if time.monotonic() > deadline:
                raise RunFailed(f"no normal task started in {GROUP_TIMEOUT:.0f}s")
            time.sleep(0.005)
        return None


def submit_normals(client: Client, args: argparse.Namespace, t: Trial) -> None:
    t.submit_start = time.time()
    n = 0
    while n < args.tasks:
        k = min(args.chunk, args.tasks - n)
        specs = [TaskSpec("count", kwargs={"n": n + i}) for i in range(k)]
        t.normal_ids.extend(h.id for h in client.submit_many(specs))
        n += k
        t.chunks.append((time.time(), n))
    t.submit_end = time.time()


def wait_started(
    r: redis.Redis[bytes], ws: dict[str, WorkerProc], ns: str, want: int, deadline: float
) -> bool:
    """Until `want` tasks have started at least once (`<ns>:execs` has them)."""
    while r.hlen(execs_key(ns)) < want:
        check_alive(ws)
        if time.time() > deadline:
            return False
        time.sleep(0.25)
    return True


def run_trial(
    kind: str, index: int, args: argparse.Namespace, log_root: Path, baseline: Path | None
) -> Trial:
    ns = f"bench-prio-{kind.replace('+', '')}-{uuid.uuid4().hex[:8]}"
    s = AppSettings(namespace=ns, bootstrap=args.kafka, redis=args.redis, result_ttl=900)
    log_dir = log_root / f"{index:02d}-{ns}"
    log_dir.mkdir(parents=True)
    t = Trial(kind, index, ns, log_dir)
    ensure_topics(s)
    code = baseline if kind == OLD and baseline is not None else ROOT
    env = run.worker_env(s)
    env["PYTHONPATH"] = str(code)
    t.origin = code_origin(code, env)
    r: redis.Redis[bytes] = redis.Redis.from_url(args.redis)
    ws: dict[str, WorkerProc] = {}
    high: HighSubmitter | None = None
    try:
        with Client(settings=s) as client, Client(settings=s) as high_client:
            for i in range(args.workers):
                name = f"w{i + 1}"
                ws[name] = start_worker(name, env, log_dir, args.concurrency, cwd=code)
                t.pids[ws[name].proc.pid] = name
            wait_group(s, ws, GROUP_TIMEOUT)
            # A round trip through the group (all up), which also connects the high client.
            high_client.submit("noop").result(timeout=GROUP_TIMEOUT)
            if kind == HIGH:
                high = HighSubmitter(high_client, r, ns, args)
                high.start()
            submit_normals(client, args, t)
            if high is not None:
                high.join(GROUP_TIMEOUT + args.high_after + args.high * args.high_every + 60)
                if high.error is not None:
                    raise RunFailed(f"high tasks: {high.error!r}")
                t.highs = high.highs
            want = len(t.normal_ids) + len(t.highs)
            if not wait_started(r, ws, ns, want, t.submit_end + args.timeout):
                t.note = f"not all {want} tasks started {args.timeout:.0f}s after the submission"
            time.sleep(QUIET)
    except RunFailed as e:
        t.note = str(e)
    finally:
        if high is not None:
            high.abort.set()
        stop_workers(list(ws.values()))
    try:
        execs = read_execs(r, ns)
        counts = read_exec_counts(r, ns)
        r.expire(log_key(ns), KEEP_KEYS)
        r.expire(execs_key(ns), KEEP_KEYS)
    finally:
        r.close()
    with open(log_dir / "runs.txt", "w") as fh:  # for a closer look afterwards
        fh.writelines(f"normal {i}\n" for i in t.normal_ids)
        fh.writelines(f"high {h.id} {h.before:.6f} {h.after:.6f}\n" for h in t.highs)
        fh.writelines(f"start {x.task} {x.pid} {x.attempt} {x.at:.6f}\n" for x in execs)
    figures(t, execs, counts)
    marks = [
        line.endswith(LEVELS_MARK)
        for w in ws.values()
        for line in w.text().splitlines()
        if ": consuming " in line
    ]
    t.code = "new" if marks and all(marks) else "old" if marks and not any(marks) else "mixed?"
    for w in ws.values():
        for line in w.text().splitlines():
            if " WARNING " in line or " ERROR " in line or "Traceback" in line:
                t.warnings.append(f"{w.name}: {line}")
    return t


def figures(t: Trial, execs: list[Exec], counts: dict[str, int]) -> None:
    runs: dict[str, list[Exec]] = {}
    for x in execs:
        runs.setdefault(x.task, []).append(x)
    first = {task: min(xs, key=lambda x: x.at) for task, xs in runs.items()}
    ids = [*t.normal_ids, *(h.id for h in t.highs)]
    t.lost = sum(1 for i in ids if i not in first)
    t.twice = sum(1 for i in ids if len(runs.get(i, ())) > 1)
    t.extra = sum(len(runs.get(i, ())) - 1 for i in ids if i in runs)
    t.mismatch = sum(1 for i in ids if counts.get(i, 0) != len(runs.get(i, ())))
    normal_starts = sorted(first[i].at for i in t.normal_ids if i in first)
    t.started = len(normal_starts)
    if normal_starts:
        t.first_normal, t.last_normal = normal_starts[0], normal_starts[-1]
    acked_at = [at for at, _ in t.chunks]
    for h in t.highs:
        got = first.get(h.id)
        started_by_submit = bisect.bisect_left(normal_starts, h.before)
        k = bisect.bisect_right(acked_at, h.before)
        h.backlog = (t.chunks[k - 1][1] if k else 0) - started_by_submit
        if got is None:
            continue
        h.start, h.pid = got.at, got.pid
        h.normals_before = bisect.bisect_left(normal_starts, got.at)
        h.normals_during = h.normals_before - started_by_submit


# --- report ----------------------------------------------------------------------------------


def fmt(v: float | None, spec: str = ".2f", width: int = 7) -> str:
    return f"{'n/a':>{width}}" if v is None else f"{v:>{width}{spec}}"


HEADER = (
    f"{'#':>2} {'kind':9}{'code':5}{'normal/s':>9}{'span s':>8}{'submit s':>9}  "
    f"{'wait p50':>8}{'p99':>7}{'max':>7}{'>1s':>4}  {'nrm before p50':>14}{'max':>7}  "
    f"{'during max':>10}{'backlog min':>12}  {'lost':>5}{'twice':>6}"
)


def row(t: Trial) -> str:
    waits = t.waits()
    before = [float(h.normals_before) for h in t.highs if h.start is not None]
    during = [h.normals_during for h in t.highs if h.start is not None]
    backlog = [h.backlog for h in t.highs]
    has_high = bool(t.highs)
    return (
        f"{t.index:>2} {t.kind:9}{t.code:5}{fmt(t.throughput, '.0f', 9)}{fmt(t.duration, '.1f', 8)}"
        f"{fmt(t.submit_end - t.submit_start, '.1f', 9)}  "
        f"{fmt(pct(waits, 50) if waits else None, '.3f', 8)}"
        f"{fmt(pct(waits, 99) if waits else None, '.3f')}"
        f"{fmt(max(waits) if waits else None, '.3f')}"
        f"{(sum(1 for w in waits if w > 1.0) if has_high else '-'):>4}  "
        f"{fmt(pct(before, 50) if before else None, '.0f', 14)}"
        f"{fmt(max(before) if before else None, '.0f')}  "
        f"{fmt(max(during) if during else None, '.0f', 10)}"
        f"{fmt(min(backlog) if backlog else None, '.0f', 12)}  "
        f"{t.lost:>5}{t.twice:>6}" + (f"  [{t.note}]" if t.note else "")
    )


def stats(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    spread = (max(values) - min(values)) / mean * 100 if mean else 0.0
    return (
        f"mean {mean:7.0f}/s, min-max {min(values):.0f}-{max(values):.0f}/s "
        f"(spread {spread:.1f}% of the mean, n={len(values)})"
    )


def ratio(a: Sequence[float], b: Sequence[float]) -> str:
    if not a or not b:
        return "n/a"
    return f"{statistics.fmean(a) / statistics.fmean(b):.3f}"


def print_summary(trials: list[Trial]) -> None:
    tput: dict[str, list[float]] = {OLD: [], NEW: [], HIGH: []}
    for t in trials:
        if t.throughput is not None and not t.note:
            tput[t.kind].append(t.throughput)
    print("\n== normal throughput (first to last normal start)")
    for kind in (OLD, NEW, HIGH):
        if any(t.kind == kind for t in trials):
            print(f"  {kind:9}{stats(tput[kind])}")
    ab = tput[OLD] + tput[NEW]
    if tput[OLD] and tput[NEW]:
        print(f"  A and B together (no high task, old and new code): {stats(ab)}")
    print(f"  C/B (new+high vs new): {ratio(tput[HIGH], tput[NEW])}")
    print(f"  B/A (new vs old, no high task): {ratio(tput[NEW], tput[OLD])}")
    if tput[HIGH] and tput[NEW]:
        lo, hi = min(tput[NEW]), max(tput[NEW])
        mean_c = statistics.fmean(tput[HIGH])
        inside = "inside" if lo <= mean_c <= hi else "outside"
        print(f"  C's mean {mean_c:.0f}/s is {inside} B's min-max {lo:.0f}-{hi:.0f}/s")
    waits = [w for t in trials if t.kind == HIGH for w in t.waits()]
    highs = [h for t in trials if t.kind == HIGH for h in t.highs]
    if highs:
        never = sum(1 for h in highs if h.start is None)
        over = [w for w in waits if w > 1.0]
        print("\n== high tasks: wait = first start - just before the submit call (s), all C trials")
        if waits:
            print(
                f"  {len(highs)} high tasks: p50 {pct(waits, 50):.3f}, p90 {pct(waits, 90):.3f}, "
                f"p99 {pct(waits, 99):.3f}, max {max(waits):.3f}; over 1 s: {len(over)}; "
                f"never started: {never}"
            )
        sub = [h.after - h.before for h in highs]
        print(
            f"  of it the submit call (until the broker acknowledged): p50 {pct(sub, 50):.3f}, "
            f"p99 {pct(sub, 99):.3f}, max {max(sub):.3f}"
        )
        backlog = [h.backlog for h in highs]
        print(
            f"  normal backlog (acknowledged, not started) at each high submit: min "
            f"{min(backlog)}, p50 {pct(backlog, 50):.0f}, max {max(backlog)}"
        )
        slow = sorted(
            ((h, t) for t in trials if t.kind == HIGH for h in t.highs if (h.wait or 99) > 1.0),
            key=lambda x: -(x[0].wait or 99),
        )
        if slow:
            print(f"  slowest (first {min(10, len(slow))} of {len(slow)} over 1 s):")
        for h, t in slow[:10]:
            worker = t.pids.get(h.pid or -1, "?")
            print(
                f"    trial {t.index} {h.id}: waited {fmt(h.wait, '.3f', 0)} s on {worker}, "
                f"submitted {h.before - t.submit_start:.2f}s after the submission began; "
                f"{h.normals_during} normal starts meanwhile, backlog {h.backlog}"
            )
    print("\n== every task once")
    for t in trials:
        n = len(t.normal_ids) + len(t.highs)
        print(
            f"  {t.index:>2} {t.kind:9}{n:>7} tasks, {t.lost} never started, {t.twice} "
            f"started more than once ({t.extra} extra starts), {t.mismatch} with <ns>:execs "
            f"differing from <ns>:log; {t.namespace}"
        )
    for t in trials:
        if t.warnings:
            print(
                f"  {t.index} {t.kind}: {len(t.warnings)} WARNING/ERROR lines in worker logs, e.g.:"
            )
            for line in t.warnings[:5]:
                print(f"    {line[:220]}")


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kafka", default=os.environ.get("RINGLEADER_TEST_KAFKA"))
    ap.add_argument("--redis", default=os.environ.get("RINGLEADER_TEST_REDIS"))
    ap.add_argument("--tasks", type=int, default=100_000, help="normal tasks per trial")
    ap.add_argument("--high", type=int, default=100, help="high tasks per C trial")
    ap.add_argument("--high-after", type=float, default=2.0, help="s after the first start")
    ap.add_argument("--high-every", type=float, default=0.1, help="s between high submits")
    ap.add_argument("--trials", type=int, default=3, help="trials of each kind")
    ap.add_argument("--baseline-rev", default="02c20ee~1", help="the old code (kind A)")
    ap.add_argument("--no-baseline", action="store_true", help="skip kind A")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8, help="threads per worker")
    ap.add_argument("--chunk", type=int, default=5000, help="normal tasks per submit_many")
    ap.add_argument("--timeout", type=float, default=900.0, help="s after the submission")
    args = ap.parse_args()
    if not args.kafka or not args.redis:
        ap.error("give --kafka and --redis (or RINGLEADER_TEST_KAFKA / RINGLEADER_TEST_REDIS)")

    tmp = Path(tempfile.mkdtemp(prefix="bench-priority-"))
    started = time.monotonic()
    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    base_rev = None if args.no_baseline else git("rev-parse", "--short", args.baseline_rev)
    u = platform.uname()
    load0 = os.getloadavg()
    print(
        f"bench_priority {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC; {u.system} {u.node} "
        f"{u.release} {u.machine}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    print(
        f"  code {head}"
        + (f" ({len(dirty.splitlines())} tracked files modified)" if dirty else "")
        + (f"; baseline (A) {args.baseline_rev} = {base_rev}" if base_rev else "")
    )
    print(f"  Kafka {args.kafka}; Redis {redact(args.redis)}; logs in {tmp}")
    ws = WorkerSettings()
    print(
        f"  {args.workers} workers x {args.concurrency} threads, {AppSettings().partitions} "
        f"partitions, max_outstanding {ws.max_outstanding}; {args.tasks} normal tasks "
        f"(submit_many, chunks of {args.chunk}); C: {args.high} high tasks (priority=1) from "
        f"{args.high_after:g} s after the first normal start, every {args.high_every:g} s"
    )
    kinds = [NEW, HIGH] if args.no_baseline else [OLD, NEW, HIGH]
    baseline: Path | None = None
    trials: list[Trial] = []
    try:
        if base_rev is not None:
            baseline = tmp / f"baseline-{base_rev}"
            git("worktree", "add", "--detach", str(baseline), base_rev)
        print(f"\n{HEADER}", flush=True)
        index = 0
        for _ in range(args.trials):
            for kind in kinds:
                index += 1
                t = run_trial(kind, index, args, tmp, baseline)
                trials.append(t)
                want = "old" if kind == OLD else "new"
                if t.code != want:
                    t.note += f" workers ran {t.code} code, wanted {want}"
                print(row(t), flush=True)
                if index <= len(kinds):  # once per kind
                    print(f"     ({kind} workers import {t.origin})", flush=True)
        print_summary(trials)
    finally:
        if baseline is not None:
            try:
                git("worktree", "remove", "--force", str(baseline))
            except subprocess.CalledProcessError as e:
                print(f"  worktree {baseline} not removed: {e.stderr.strip()}")
        head1 = git("rev-parse", "--short", "HEAD")
        dirty1 = git("status", "--porcelain", "--untracked-files=no")
        if (head1, dirty1) != (head, dirty):
            print(
                f"  the code changed during the run: now {head1}, "
                f"{len(dirty1.splitlines())} tracked files modified"
            )
        load1 = os.getloadavg()
        print(
            f"\ntotal {time.monotonic() - started:.0f}s; load average at the end "
            f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
