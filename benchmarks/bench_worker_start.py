"""A worker process from launch to its first task, joining a settled group (prints figures).

    RINGLEADER_TEST_KAFKA=K RINGLEADER_TEST_REDIS=R .venv/bin/python \\
        benchmarks/bench_worker_start.py [--trials 5] [--broker tansu]

One worker (w1, 4 threads) holds all the partitions of a fresh namespace; a backlog of
`count` tasks of 20 ms each is queued on every partition, so whichever partitions the
newcomer gets have tasks waiting. Then, per trial, w2 is launched (`python -m
ringleader.worker.run`, as `ringleader worker` runs it) and timed from just before the
launch to its first task start (the counting app's execution log in Redis, by w2's PID).
Phases from w2's own log lines: process start to its first line (interpreter, imports,
the app), to "joined generation", to "consuming", to the first task. After each trial w2
is stopped with SIGTERM and the group settles back on w1 before the next launch.

Baseline in the same run: `python -c pass` and `python -c "import confluent_kafka, redis"`
with the same interpreter (what any Python worker on these clients pays to start).
Target (issue 15): launch to first task 0.5 s or less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._workers import (
    ROOT,
    WorkerProc,
    log_time,
    read_execs,
    start_worker,
    stop_workers,
    wait_group,
)
from ringleader.client import Client, TaskSpec
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings

PARTITIONS = 12
PHASES = ("first log line", "joined", "consuming", "first task")


def timed_python(code: str, runs: int) -> float:
    """Median wall seconds of `python -c code`."""
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


@dataclass
class Trial:
    phases: dict[str, float]  # phase -> seconds after launch


def phase_times(w: WorkerProc, launched: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in w.text().splitlines():
        at = log_time(line)
        if at is None:
            continue
        if "first log line" not in out:
            out["first log line"] = at - launched
        if "joined" not in out and " joined generation " in line:
            out["joined"] = at - launched
        if "consuming" not in out and ": consuming [" in line and ": consuming [] " not in line:
            out["consuming"] = at - launched
    return out


def first_task_at(r: redis.Redis[bytes], ns: str, pid: int, deadline: float) -> float:
    while time.monotonic() < deadline:
        starts = [e.at for e in read_execs(r, ns) if e.pid == pid]
        if starts:
            return min(starts)
        time.sleep(0.01)
    raise RuntimeError("the new worker started no task in time")


def trial(s: AppSettings, env: dict[str, str], w1: WorkerProc, log_dir: Path, i: int) -> Trial:
    r: redis.Redis[bytes] = redis.Redis.from_url(s.redis)
    launched = time.time()
    w2 = start_worker(f"w2-{i}", env, log_dir, 4, log_level=env.get("BENCH_LOG_LEVEL", "INFO"))
    try:
        first = first_task_at(r, s.namespace, w2.proc.pid, time.monotonic() + 60)
        phases = phase_times(w2, launched)
        phases["first task"] = first - launched
    finally:
        stop_workers([w2])
    wait_group(s, {"w1": w1}, timeout=60)
    return Trial(phases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    args = ap.parse_args()
    env_key = "RINGLEADER_TEST_KAFKA" if args.broker == "kafka" else "RINGLEADER_TEST_TANSU"
    bootstrap = os.environ[env_key]
    redis_url = os.environ.get("RINGLEADER_TEST_REDIS", "redis://127.0.0.1:16379/0")
    s = AppSettings(
        namespace=f"bench-start-{uuid.uuid4().hex[:8]}",
        bootstrap=bootstrap,
        redis=redis_url,
        partitions=PARTITIONS,
    )
    ensure_topics(s)
    env = {**os.environ, **s.to_env(), "PYTHONPATH": str(ROOT)}
    env["RINGLEADER_SESSION_TIMEOUT_MS"] = "10000"
    base_pass = timed_python("pass", 5)
    base_clients = timed_python("import confluent_kafka, redis", 5)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-start-"))
    w1 = start_worker("w1", env, log_dir, 4)
    trials: list[Trial] = []
    try:
        wait_group(s, {"w1": w1}, timeout=60)
        # A backlog that outlasts every trial: w1 runs 4 x 50 of these a second.
        backlog = 200 * (args.trials + 2) * 10
        with Client(settings=s) as client:
            client.submit_many([TaskSpec("count", [], {"sleep": 0.02}) for _ in range(backlog)])
        for i in range(args.trials):
            trials.append(trial(s, env, w1, log_dir, i))
            t = trials[-1].phases
            print(f"trial {i + 1}: " + ", ".join(f"{p} {t[p]:.2f}s" for p in PHASES if p in t))
    finally:
        stop_workers([w1])
    print(f"\n{args.broker} {bootstrap}, {args.trials} trials, logs in {log_dir}")
    print(f"baseline: python -c pass {base_pass * 1000:.0f} ms; ", end="")
    print(f"import confluent_kafka, redis {base_clients * 1000:.0f} ms")
    for p in PHASES:
        got = [t.phases[p] for t in trials if p in t.phases]
        if got:
            print(
                f"  launch to {p:<15} median {statistics.median(got):.2f}s  "
                f"[{' '.join(f'{x:.2f}' for x in got)}]"
            )
    med = statistics.median(t.phases["first task"] for t in trials)
    print(f"target launch to first task <= 0.5 s: {'met' if med <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
