"""Task app of bench_rebalance.py: `nap` sleeps and records each execution in Redis.

Configured from the environment like any app (RINGLEADER_NAMESPACE, _BOOTSTRAP, _REDIS,
_PARTITIONS). Keys, under the namespace:
  <ns>:bench:starts   list of "task_id pid wall_time" per execution start
  <ns>:bench:ends     list of "task_id pid wall_time" per execution end
"""

from __future__ import annotations

import os
import time

import redis

from ringleader.worker.app import App
from ringleader.worker.tasks import TaskContext

app = App()
NS = app.namespace
PID = os.getpid()
_r: redis.Redis[bytes] = redis.Redis.from_url(app.settings.redis)


def starts_key(ns: str) -> str:
    return f"{ns}:bench:starts"


def ends_key(ns: str) -> str:
    return f"{ns}:bench:ends"


@app.task(name="nap", bind=True, retries=0)
def nap(ctx: TaskContext, ms: int) -> int:
    """Sleep `ms` milliseconds (the CPU stays free); record the start and the end."""
    _r.rpush(starts_key(NS), f"{ctx.task_id} {PID} {time.time():.6f}")
    time.sleep(ms / 1000)
    _r.rpush(ends_key(NS), f"{ctx.task_id} {PID} {time.time():.6f}")
    return ms
