"""Helpers for worker integration tests: worker OS processes, raw submission, topic reads.

Workers run as `python -m ringleader.worker.run tests.worker.apps.counting:app --id ID` from the
repository root, configured through RINGLEADER_* variables. Each process's stderr goes to
its own log file, printed when a test fails (`dump_logs`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from ringleader.security import KafkaSecurity
from ringleader.worker import envelope as envelope_mod
from ringleader.worker import run as worker_run
from ringleader.worker.envelope import Envelope, new_task_id
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.settings import AppSettings

ROOT = Path(__file__).resolve().parents[2]
COUNTING_APP = "tests.worker.apps.counting:app"


def wait_until(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def worker_env(
    namespace: str,
    bootstrap: str,
    redis_url: str,
    *,
    partitions: int = 6,
    session_ms: int = 6000,
    extra: dict[str, str] | None = None,
    security: KafkaSecurity | None = None,
) -> dict[str, str]:
    app = AppSettings(
        namespace=namespace,
        bootstrap=bootstrap,
        redis=redis_url,
        partitions=partitions,
        security=security or KafkaSecurity(),
    )
    env = worker_run.worker_env(app, session_ms=session_ms)
    # Test overrides pass through to the workers.
    env.update({k: v for k, v in os.environ.items() if k.startswith("RINGLEADER_TEST_")})
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


@dataclass
class WorkerProc:
    worker_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Workers:
    """Worker processes of one test; `close()` stops every one still running (by PID)."""

    env: dict[str, str]
    log_dir: Path
    app_ref: str = COUNTING_APP
    procs: list[WorkerProc] = field(default_factory=list)

    def start(
        self, worker_id: str, concurrency: int = 4, extra_env: dict[str, str] | None = None
    ) -> WorkerProc:
        log_path = self.log_dir / f"{worker_id}.log"
        env = {**self.env, **(extra_env or {})}
        fh = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its lifetime
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ringleader.worker.run",
                    self.app_ref,
                    "--id",
                    worker_id,
                    "--concurrency",
                    str(concurrency),
                    "--log-level",
                    env.get("RINGLEADER_LOG_LEVEL", "INFO"),
                ],
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        finally:
            fh.close()
        wp = WorkerProc(worker_id, proc, log_path)
        self.procs.append(wp)
        return wp

    def close(self) -> None:
        for wp in self.procs:
            wp.terminate()
        for wp in self.procs:
            try:
                wp.wait(60)
            except subprocess.TimeoutExpired:
                wp.kill()
                wp.wait(10)

    def dump_logs(self, tail: int = 60) -> str:
        out = []
        for wp in self.procs:
            lines = wp.log_text().splitlines()[-tail:]
            out.append(f"----- {wp.worker_id} (rc={wp.proc.poll()}) -----")
            out.extend(lines)
        return "\n".join(out)


@contextmanager
def workers_of(
    settings: AppSettings, log_dir: Path, *, extra: dict[str, str] | None = None
) -> Iterator[Workers]:
    """Worker processes for `settings`' namespace; stopped (and their logs printed) after."""
    env = worker_env(
        settings.namespace,
        settings.bootstrap,
        settings.redis,
        partitions=settings.partitions,
        extra=extra,
        security=settings.security,
    )
    ws = Workers(env, log_dir)
    try:
        yield ws
    finally:
        ws.close()
        print(ws.dump_logs())


# --- submitting without the Client ---------------------------------------------------------


def envelopes(name: str, count: int, **kwargs: Any) -> list[Envelope]:
    now = time.time()
    return [
        Envelope(id=new_task_id(), name=name, kwargs=dict(kwargs), submitted_at=now)
        for _ in range(count)
    ]


def produce(bootstrap: str, topic: str, values: Iterable[bytes], timeout: float = 60.0) -> int:
    """Produce raw values (keyed by a random id), wait for every ack; returns how many."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": True,
            "message.max.bytes": 4 * 1024 * 1024,
        }
    )
    errors: list[str] = []
    n = 0

    def cb(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for v in values:
        while True:
            try:
                p.produce(topic, value=v, key=uuid.uuid4().hex.encode(), on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        n += 1
    left = p.flush(timeout)
    assert not errors, errors[:3]
    assert left == 0, f"{left} records unacknowledged"
    return n


def submit_envelopes(bootstrap: str, topic: str, envs: Sequence[Envelope]) -> None:
    produce(bootstrap, topic, (envelope_mod.encode(e, max_size=None) for e in envs))


def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[bytes]], bool],
    timeout: float,
) -> list[bytes]:
    """Read partition 0 of `topic` from the start until `until(values)` or the deadline."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    values: list[bytes] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout
        while not until(values) and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.2):
                if m.error() is None:
                    values.append(m.value() or b"")
    finally:
        c.close()
    return values


def read_all(bootstrap: str, topic: str, timeout: float = 60.0) -> list[bytes]:
    """Every value of partition 0 of `topic` written before this call."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-wm-{uuid.uuid4().hex}"})
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        c.close()
    return read_topic(bootstrap, topic, lambda values: len(values) >= high, timeout)


# --- reading what the counting app recorded ------------------------------------------------


def namespace(bootstrap: str, redis_url: str, name: str, partitions: int = 12) -> AppSettings:
    """The settings of a fresh namespace, its topics created."""
    s = AppSettings(namespace=name, bootstrap=bootstrap, redis=redis_url, partitions=partitions)
    ensure_topics(s)
    return s


def wait_started(settings: AppSettings, task_id: str, timeout: float = 90.0) -> None:
    """Until the counting app recorded a start of `task_id`."""
    wait_until(
        lambda: task_id in executions(settings.redis, settings.namespace),
        timeout,
        f"task {task_id} to start",
    )


def executions(redis_url: str, namespace: str) -> dict[str, int]:
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    raw = r.hgetall(f"{namespace}:execs")
    return {k.decode(): int(v) for k, v in raw.items()}


def run_log(redis_url: str, namespace: str) -> list[str]:
    """The counting app's "task_id pid attempt wall_time" lines, oldest first."""
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    return [line.decode() for line in r.lrange(f"{namespace}:log", 0, -1)]


def end_offset(bootstrap: str, topic: str, partition: int) -> int:
    """The partition's high watermark: the offset the next record gets."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-wm-{uuid.uuid4().hex}"})
    try:
        _, high = c.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10, cached=False
        )
    finally:
        c.close()
    return int(high)


def completed_ids(redis_url: str, namespace: str, ids: Sequence[str]) -> list[bool]:
    """Which tasks have a completion record (the result store's `done` key)."""
    from ringleader.worker.results import ResultStore

    store = ResultStore.from_url(redis_url, namespace)
    return [store.is_completed(i) for i in ids]


def count_completed(redis_url: str, namespace: str, ids: Sequence[str]) -> int:
    from ringleader.worker.results import ResultStore

    return ResultStore.from_url(redis_url, namespace).count_completed(ids)
