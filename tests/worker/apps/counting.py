"""Test app: tasks that record every execution in Redis so tests can count them.

Configured from the environment (RINGLEADER_NAMESPACE, _BOOTSTRAP, _REDIS, _PARTITIONS,
_MAX_PAYLOAD_BYTES). Keys, all under the namespace:
  <ns>:execs    hash task id -> number of executions started
  <ns>:log      list of "task_id pid attempt wall_time" per execution start
  <ns>:ends     list of "task_id pid attempt wall_time" per execution end (the `long` task)
"""

from __future__ import annotations

import logging
import os
import time

import redis

from ringleader.worker.app import App
from ringleader.worker.retry import Backoff
from ringleader.worker.tasks import TaskContext

app = App()
NS = app.namespace
# RINGLEADER_TEST_APP_REDIS: where the test bookkeeping goes when the app's own Redis user
# may touch only ringleader's keys (the secured-cluster tests).
_r: redis.Redis[bytes] = redis.Redis.from_url(
    os.environ.get("RINGLEADER_TEST_APP_REDIS") or app.settings.redis
)
PID = os.getpid()


def execs_key(ns: str) -> str:
    return f"{ns}:execs"


def log_key(ns: str) -> str:
    return f"{ns}:log"


def ends_key(ns: str) -> str:
    return f"{ns}:ends"


def _record(ctx: TaskContext) -> None:
    pipe = _r.pipeline(transaction=False)
    pipe.hincrby(execs_key(NS), ctx.task_id, 1)
    pipe.rpush(log_key(NS), f"{ctx.task_id} {PID} {ctx.attempt} {time.time():.6f}")
    pipe.execute()


@app.task(name="noop")
def noop(*args: object, **kwargs: object) -> None:
    return None


@app.task(name="count", bind=True)
def count(ctx: TaskContext, n: int = 0, sleep: float = 0.0) -> int:
    _record(ctx)
    if sleep:
        time.sleep(sleep)
    return n


@app.task(name="flaky", bind=True, retries=3, backoff=Backoff(initial=0.4, jitter=0.1))
def flaky(ctx: TaskContext, fail_times: int = 2) -> int:
    _record(ctx)
    if ctx.attempt <= fail_times:
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    return ctx.attempt


@app.task(name="spin", bind=True, retries=0)
def spin(ctx: TaskContext, seconds: float) -> float:
    """Hold the GIL most of the time for `seconds` (a CPU-bound long task)."""
    _record(ctx)
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        for i in range(10_000):
            x += i
    return seconds


@app.task(name="long", bind=True, retries=0)
def long_task(ctx: TaskContext, seconds: float) -> float:
    """Sleep `seconds` (a long task that leaves the CPU free); records its start and its end."""
    _record(ctx)
    time.sleep(seconds)
    _r.rpush(ends_key(NS), f"{ctx.task_id} {PID} {ctx.attempt} {time.time():.6f}")
    return seconds


@app.task(name="die", bind=True, retries=3)
def die(ctx: TaskContext) -> None:
    """Kill the worker process running it (a poison task: a segfault, an OOM kill)."""
    _record(ctx)
    os._exit(1)


@app.task(name="always_fails", bind=True, retries=2, backoff=Backoff(initial=1.5, jitter=0.0))
def always_fails(ctx: TaskContext) -> None:
    _record(ctx)
    raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")


@app.task(name="fails_once_slowly", bind=True, retries=1, backoff=Backoff(initial=30, jitter=0.0))
def fails_once_slowly(ctx: TaskContext) -> int:
    _record(ctx)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails; the retry waits 30 s")
    return ctx.attempt


@app.task(name="cancellable", bind=True, retries=0)
def cancellable(ctx: TaskContext, seconds: float) -> str:
    """Work for `seconds`, stopping at a checkpoint every 50 ms if cancelled."""
    _record(ctx)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ctx.checkpoint()
        time.sleep(0.05)
    return "finished"


@app.task(name="fails_late", bind=True, retries=2, backoff=Backoff(initial=0.3, jitter=0.0))
def fails_late(ctx: TaskContext, seconds: float) -> None:
    """Sleep `seconds` without a checkpoint, then fail (a task that ignores cancellation)."""
    _record(ctx)
    time.sleep(seconds)
    raise RuntimeError(f"attempt {ctx.attempt} fails late on purpose")


def steps_key(ns: str) -> str:
    return f"{ns}:steps"


@app.task(name="steps", bind=True, retries=0)
def steps(ctx: TaskContext, n: int, seconds: float) -> int:
    """`n` steps of `seconds`, each after a checkpoint, each recorded in `<ns>:steps` as
    "task_id pid step wall_time": a run that stops at a checkpoint records no more steps."""
    _record(ctx)
    for i in range(n):
        ctx.checkpoint()
        _r.rpush(steps_key(NS), f"{ctx.task_id} {PID} {i} {time.time():.6f}")
        time.sleep(seconds)
    return n


@app.task(name="chatty", bind=True, retries=0, timeout=30)
def chatty(ctx: TaskContext, word: str) -> str:
    """Logs through its context and through a plain logger of its own (with a timeout, so it
    runs on the timeout's thread: the log fields must follow it there)."""
    ctx.logger.info("context says %s", word)
    logging.getLogger("user.code").warning("plain logger says %s", word)
    return word
