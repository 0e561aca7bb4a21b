"""`ringleader demo`: the main job on the embedded default (Tansu + Valkey).

It runs a real dispatch and says what happened: the embedded services start, worker
processes join the group and settle on a committed assignment, tasks are submitted, one
worker is SIGKILLed mid-run, its partitions move to the survivors, and every accepted task
completes once. Exit 0 when every check held, 1 when one did not.
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis

from ringleader.client import Client, TaskSpec
from ringleader.coordinator.assignment import Assignment
from ringleader.demo_args import add_parser  # noqa: F401  (re-exported: it was here)
from ringleader.groupview import last_committed, worker_id_from_member
from ringleader.local import progress, services
from ringleader.local.procs import terminate_all
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.results import ResultStore
from ringleader.worker.run import worker_env
from ringleader.worker.settings import AppSettings

APP_REF = "ringleader.demo_app:app"
NAMESPACE = "demo"
T = TypeVar("T")


def execs_key(namespace: str) -> str:
    """Hash task id -> execution starts, kept by the demo app."""
    return f"{namespace}:demo:execs"


def starts_key(namespace: str) -> str:
    """List of "task_id pid" per execution start, in order, kept by the demo app."""
    return f"{namespace}:demo:starts"


class DemoFailed(Exception):
    """A step did not reach its condition within its deadline."""


@dataclass
class DemoWorker:
    worker_id: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text)


def run(args: argparse.Namespace) -> int:
    # Phases go to stderr as they happen; stdout keeps the report people and scripts read.
    say = progress.to_stream(_elapsed_prefix(time.monotonic()))
    with tempfile.TemporaryDirectory(prefix="ringleader-demo-") as tmp:
        t0 = time.monotonic()
        say("starting the embedded services (Tansu, Valkey)")
        try:
            stack = services.up(
                Path(tmp), tansu=True, valkey=True, say=lambda m: say(f"local: {m}")
            )
        except services.ServiceStartError as e:
            print(f"demo: the embedded services did not start: {e}", file=sys.stderr)
            return 1
        assert stack.bootstrap is not None and stack.redis is not None
        _out(f"embedded services up in {time.monotonic() - t0:.1f}s: "
             f"Tansu at {stack.bootstrap}, Valkey at {stack.redis}")  # fmt: skip
        settings = AppSettings(
            namespace=NAMESPACE,
            bootstrap=stack.bootstrap,
            redis=stack.redis,
            partitions=args.partitions,
        )
        workers: list[DemoWorker] = []
        try:
            log_dir = args.log_dir or Path(tmp)
            log_dir.mkdir(parents=True, exist_ok=True)
            _dispatch(args, settings, log_dir, workers, say)
            ok = True
        except DemoFailed as e:
            print(f"\nFAILED: {e}", file=sys.stderr)
            for w in workers:
                _out(f"  --- {w.worker_id} (exit {w.proc.poll()}) ---\n{w.tail()}")
            ok = False
        finally:
            say("stopping the workers and the embedded services")
            _stop_workers(workers)
            services.down(Path(tmp))
            _out("embedded services stopped")
    return 0 if ok else 1


def _elapsed_prefix(t0: float) -> Callable[[], str]:
    """`demo [ 3.2s] `: seconds since `t0`, so phase lines stand apart from the report."""
    return lambda: f"demo [{time.monotonic() - t0:4.1f}s] "


def _out(text: str) -> None:
    """A report line on stdout, flushed so it keeps its place among the phase lines."""
    print(text, flush=True)


def _dispatch(
    args: argparse.Namespace,
    settings: AppSettings,
    log_dir: Path,
    workers: list[DemoWorker],
    say: progress.Say = progress.silent,
) -> None:
    ensure_topics(settings)
    env = worker_env(settings, session_ms=args.session_ms)
    for i in range(1, args.workers + 1):
        workers.append(_start_worker(f"w{i}", args.concurrency, env, log_dir))
    started = ", ".join(f"{w.worker_id} (pid {w.proc.pid})" for w in workers)
    say(f"starting {len(workers)} worker processes: {started}")
    _out(f"started {len(workers)} worker processes: {started}")

    t0 = time.monotonic()
    settled = _wait_for(
        lambda: _settled(settings, {w.worker_id for w in workers}),
        90,
        "the group to settle on a committed assignment covering every worker",
        say,
    )
    took = time.monotonic() - t0
    say(f"group settled: generation {settled.generation} committed {took:.1f}s after the "
        "workers started")  # fmt: skip
    _out(f"group settled in {took:.1f}s: {_describe(settled)}")

    store = ResultStore.from_url(settings.redis, settings.namespace)
    say(f"submitting {args.tasks} tasks")
    with Client(settings=settings) as client:
        t0 = time.monotonic()
        specs = [
            TaskSpec("provision", kwargs={"host": f"host-{i:04d}", "seconds": args.task_seconds})
            for i in range(args.tasks)
        ]
        ids = [h.id for h in client.submit_many(specs)]
    _out(f"submitted {len(ids)} 'provision' tasks, each acknowledged by the broker, "
         f"in {time.monotonic() - t0:.2f}s")  # fmt: skip

    _wait_for(
        lambda: store.count_completed(ids) >= len(ids) // 3 or None,
        120,
        "a third of the tasks to complete",
        say,
        first=f"running: waiting for {len(ids) // 3} of {len(ids)} tasks to complete",
    )
    victim = workers[1]
    done_at_kill = store.count_completed(ids)
    say(f"SIGKILL {victim.worker_id} (pid {victim.proc.pid}) mid-run, "
        f"{done_at_kill}/{len(ids)} tasks complete")  # fmt: skip
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(30)
    killed_at = time.monotonic()
    _out(f"SIGKILLed {victim.worker_id} (pid {victim.proc.pid}) with "
         f"{done_at_kill}/{len(ids)} tasks complete")  # fmt: skip

    survivors = {w.worker_id for w in workers if w is not victim}
    moved = _wait_for(
        lambda: _settled(settings, survivors),
        max(60, 4 * args.session_ms / 1000),
        f"a committed generation without {victim.worker_id}",
        say,
        first=f"waiting for failover: a committed generation without {victim.worker_id}",
    )
    took = time.monotonic() - killed_at
    say(f"failover: generation {moved.generation} committed {took:.1f}s after the kill")
    _out(f"new generation committed {took:.1f}s after the kill: {_describe(moved)}")

    left = len(ids) - store.count_completed(ids)
    _wait_for(
        lambda: store.count_completed(ids) == len(ids) or None,
        180,
        "every task to complete after the kill",
        say,
        first=f"draining: waiting for the other {left} of {len(ids)} tasks to complete",
    )
    _out(f"all {len(ids)} tasks complete {time.monotonic() - killed_at:.1f}s after the kill")
    say(f"checking: executions and completion records of {len(ids)} tasks")
    _report(settings, ids, victim, store)


def _report(settings: AppSettings, ids: list[str], victim: DemoWorker, store: ResultStore) -> None:
    r: redis.Redis[bytes] = redis.Redis.from_url(settings.redis)
    execs = {k.decode(): int(v) for k, v in r.hgetall(execs_key(settings.namespace)).items()}
    starts = [line.decode().split() for line in r.lrange(starts_key(settings.namespace), 0, -1)]
    by_pid = collections.Counter(pid for _, pid in starts)
    victim_tasks = {task for task, pid in starts if int(pid) == victim.proc.pid}
    repeated = {task for task, n in execs.items() if n > 1}
    missing = [i for i in ids if i not in execs]
    _out(f"executions: {sum(execs.values())} starts for {len(execs)} tasks; "
         f"{len(repeated)} ran twice, all of them started by the killed worker: "
         f"{repeated <= victim_tasks}")  # fmt: skip
    _out("starts per worker pid: " + ", ".join(f"{p}: {n}" for p, n in sorted(by_pid.items())))
    _out(f"completion records: {store.count_completed(ids)} for {len(ids)} task ids (one each)")
    _out(f"result of the last task: {store.wait_result(ids[-1], 10).value()!r}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} tasks never started")
    if not repeated <= victim_tasks:
        problems.append("a task ran twice that the killed worker had not started")
    if problems:
        raise DemoFailed("; ".join(problems))
    _out("OK: every accepted task completed once, after a worker was killed mid-run")


def _settled(settings: AppSettings, worker_ids: set[str]) -> Assignment | None:
    """The last committed generation if its owners are exactly `worker_ids`, all partitions
    owned; else None."""
    a = last_committed(settings, timeout=5.0)
    if a is None:
        return None
    owners = {_worker_of(m) for m, parts in a.owners.items() if parts}
    owned = sorted(p for parts in a.owners.values() for p in parts)
    if owners == worker_ids and owned == list(range(settings.partitions)):
        return a
    return None


def _worker_of(member_id: str) -> str:
    return worker_id_from_member(member_id) or member_id


def _describe(a: Assignment) -> str:
    parts = "; ".join(
        f"{_worker_of(m)} owns {sorted(ps)}" for m, ps in sorted(a.owners.items()) if ps
    )
    return f"generation {a.generation}, leader {_worker_of(a.leader)}; {parts}"


def _wait_for(
    cond: Callable[[], T | None],
    timeout: float,
    what: str,
    say: progress.Say = progress.silent,
    *,
    first: str | None = None,
) -> T:
    deadline = time.monotonic() + timeout
    ticker = progress.Ticker(say, what, first=first)
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        ticker.tick()
        time.sleep(0.2)


def _start_worker(
    worker_id: str, concurrency: int, env: dict[str, str], log_dir: Path
) -> DemoWorker:
    log = log_dir / f"{worker_id}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ringleader.worker.run", APP_REF, "--id", worker_id,
             "--concurrency", str(concurrency), "--log-level", "INFO"],
            env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=log_dir,
        )  # fmt: skip
    return DemoWorker(worker_id, proc, log)


def _stop_workers(workers: list[DemoWorker]) -> None:
    """SIGTERM every worker still running (they drain and leave), SIGKILL after a bound."""
    codes = terminate_all([w.proc for w in workers], 60)
    stopped = [w.worker_id for w, rc in zip(workers, codes, strict=True) if rc == 0]
    if stopped:
        _out(f"workers {', '.join(stopped)} stopped cleanly on SIGTERM")
