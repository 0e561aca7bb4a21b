"""Worker OS processes for the benchmarks: start, wait for the group, stop, read the counting
app's execution log (tests/worker/apps/counting.py).

A worker is `python -m ringleader.worker.run APP --id NAME --concurrency C --log-level INFO`,
its output in `<log dir>/<NAME>.log`. `cwd` and the environment's PYTHONPATH pick the code it
imports: the repository (the default) or another checkout, e.g. a git worktree of an older
commit (`code_origin` tells which files a process with that cwd and environment imports).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ringleader.status import gather  # noqa: E402
from ringleader.worker.settings import AppSettings  # noqa: E402

COUNTING_APP = "tests.worker.apps.counting:app"
STOP_TIMEOUT = 40.0  # seconds after SIGTERM before SIGKILL


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of non-empty `values`."""
    v = sorted(values)
    return v[min(len(v) - 1, round(q / 100 * (len(v) - 1)))]


def log_key(ns: str) -> str:
    """`<ns>:log`: "task_id pid attempt wall_time" per execution start (the counting app; not
    imported from it: importing it builds an App from the environment)."""
    return f"{ns}:log"


def execs_key(ns: str) -> str:
    """`<ns>:execs`: task id -> executions started (the counting app)."""
    return f"{ns}:execs"


@dataclass
class WorkerProc:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def start_worker(
    name: str,
    env: Mapping[str, str],
    log_dir: Path,
    concurrency: int,
    *,
    app: str = COUNTING_APP,
    cwd: Path = ROOT,
    log_level: str = "INFO",
) -> WorkerProc:
    log = log_dir / f"{name}.log"
    fh = open(log, "wb")  # noqa: SIM115 - the child owns it for its lifetime
    try:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "ringleader.worker.run", app, "--id", name),
                *("--concurrency", str(concurrency), "--log-level", log_level),
            ],
            cwd=cwd,
            env=dict(env),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    finally:
        fh.close()
    return WorkerProc(name, proc, log)


def stop_workers(ws: Sequence[WorkerProc], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM each live one (by its PID), then SIGKILL those still there after `timeout`."""
    live = [w for w in ws if w.proc.poll() is None]
    for w in live:
        w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for w in live:
        try:
            w.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait(10)


class RunFailed(Exception):
    pass


def check_alive(ws: Mapping[str, WorkerProc]) -> None:
    for n, w in sorted(ws.items()):
        if w.proc.poll() is not None:
            raise RunFailed(f"worker {n} exited with {w.proc.returncode}; see {w.log}")


_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_CONSUMING = re.compile(r" generation (\d+): consuming ")


def log_time(line: str) -> float | None:
    """The wall time a worker log line starts with (local time, millisecond resolution)."""
    m = _TS.match(line)
    if m is None:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def consuming_generations(w: WorkerProc) -> set[int]:
    """The generations whose partitions the worker started fetching (its log lines)."""
    return {int(m.group(1)) for m in _CONSUMING.finditer(w.text())}


@dataclass(frozen=True)
class Group:
    leader: str | None  # worker id of the committed generation's leader
    generation: int | None
    owners: dict[str, int]  # worker id -> partitions it owns


def group_of(s: AppSettings) -> Group:
    report = gather(s, timeout=5.0)
    by_member = {m.member_id: m for m in report.members}
    lead = by_member.get(report.leader or "")
    owners = {
        m.worker_id: len(m.partitions or []) for m in report.members if m.worker_id is not None
    }
    return Group(lead.worker_id if lead else None, report.generation, owners)


def wait_group(s: AppSettings, ws: Mapping[str, WorkerProc], timeout: float = 120.0) -> Group:
    """Until the group's generation gives all `s.partitions` partitions to exactly the workers
    of `ws`, each with some, and each worker's log says it fetches that generation's."""
    deadline = time.monotonic() + timeout
    expected = set(ws)
    while True:
        check_alive(ws)
        try:
            g = group_of(s)
            if (
                g.generation is not None
                and set(g.owners) == expected
                and all(g.owners.values())
                and sum(g.owners.values()) == s.partitions
                and all(g.generation in consuming_generations(w) for w in ws.values())
            ):
                return g
        except Exception:  # noqa: BLE001 - not there yet; the deadline bounds it
            pass
        if time.monotonic() > deadline:
            raise RunFailed(f"the group {sorted(expected)} was not up in {timeout:.0f}s")
        time.sleep(0.5)


def code_origin(cwd: Path, env: Mapping[str, str]) -> str:
    """The files `ringleader` and its worker runtime are imported from by a Python process
    started with this cwd and environment (as a worker is)."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ringleader, ringleader.worker.runtime as r; print(ringleader.__file__, "
            "r.__file__)",
        ],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = out.stdout.strip()
    if out.returncode != 0 or not text:
        return f"? (exit {out.returncode}: {out.stderr.strip()[-300:]})"
    return text


@dataclass(frozen=True)
class Exec:
    task: str
    pid: int
    attempt: int
    at: float  # wall time the execution started


def read_execs(r: redis.Redis[bytes], ns: str) -> list[Exec]:
    out = []
    for raw in r.lrange(log_key(ns), 0, -1):
        task, pid, attempt, at = raw.decode().split()
        out.append(Exec(task, int(pid), int(attempt), float(at)))
    return out


def read_exec_counts(r: redis.Redis[bytes], ns: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(execs_key(ns)).items()}
