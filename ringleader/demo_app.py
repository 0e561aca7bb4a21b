"""The tasks `ringleader demo` runs: `python -m ringleader.worker.run ringleader.demo_app:app`.

Configured from RINGLEADER_* like any app. Every execution start is counted in Redis
(`<ns>:demo:execs`, task id -> starts) so the demo can show how many tasks ran twice
after a worker was killed, next to the once-only completion records the worker keeps.
"""

from __future__ import annotations

import os
import time

import redis

from ringleader.demo import execs_key, starts_key
from ringleader.worker.app import App
from ringleader.worker.tasks import TaskContext

app = App()
_redis: redis.Redis[bytes] = redis.Redis.from_url(app.settings.redis)
_PID = os.getpid()


@app.task(name="provision", bind=True)
def provision(ctx: TaskContext, host: str, seconds: float = 0.05) -> str:
    """Stands in for a step of real work (a deployment, a build): it takes a while."""
    pipe = _redis.pipeline(transaction=False)
    pipe.hincrby(execs_key(app.namespace), ctx.task_id, 1)
    pipe.rpush(starts_key(app.namespace), f"{ctx.task_id} {_PID}")
    pipe.execute()
    time.sleep(seconds)
    return f"{host} ready"
