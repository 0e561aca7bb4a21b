"""Cancelling a task: one script decides from what Redis knows of the task, atomically with
every worker's start (`worker.ledger`'s begin script reads the same keys).

* finished (a completion record exists): nothing changes; the caller is told it had finished.
* running (a run's start is recorded): a cancel flag is set and the status says
  `cancel_requested`; the task sees it as `ctx.cancelled` and stops at its next
  `ctx.checkpoint()` (which raises `TaskCancelled`), and its run then records it cancelled.
* otherwise (queued on the topic, scheduled, or a retry waiting): a cancelled completion record
  is written, so a worker that fetches it later skips it as completed (the begin script checks
  the record first) and `result()` raises `TaskCancelled`; a scheduled or waiting retry also
  leaves the delayed set. It survives worker restarts: the record is in Redis.
"""

from __future__ import annotations

import enum
import time

from ringleader.worker.errors import CANCELLED_TYPE
from ringleader.worker.ledger import alive_key
from ringleader.worker.records import CompletionWrite
from ringleader.worker.results import ResultStore, _ttl_ms

__all__ = ["CancelOutcome", "cancel", "cancel_requested"]


class CancelOutcome(enum.Enum):
    CANCELLED = "cancelled"  # it will never start
    REQUESTED = "requested"  # it is running; it stops at its next checkpoint
    FINISHED = "finished"  # it had already finished (succeeded, failed or cancelled)


# KEYS: done, status, notify, run, cancel flag, delayed, delayed env.
# ARGV: record, ttl ms, task id, alive-key prefix. A start whose worker is gone (a crash) is
# not a run in progress: the next worker would run it again, so it is cancelled outright.
_CANCEL_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'finished' end
local h = redis.call('HGETALL', KEYS[4])
for i = 1, #h, 2 do
  local f = h[i]
  if string.sub(f, 1, 2) == 's:' and redis.call('EXISTS', ARGV[4] .. string.sub(f, 3)) == 1 then
    redis.call('SET', KEYS[5], '1', 'PX', ARGV[2])
    redis.call('SET', KEYS[2], 'cancel_requested', 'PX', ARGV[2])
    return 'requested'
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('RPUSH', KEYS[3], '1')
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[6], ARGV[3])
redis.call('HDEL', KEYS[7], ARGV[3])
return 'cancelled'
"""


def cancel(store: ResultStore, task_id: str, ttl: float, *, reason: str = "") -> CancelOutcome:
    """Cancel `task_id` (see the module docstring); `ttl` is the result TTL."""
    done, status, notify, run, flag = store.task_keys(task_id)
    record = CompletionWrite(
        task_id,
        error_type=CANCELLED_TYPE,
        error=reason or "cancelled before it started",
        at=time.time(),
    ).record()
    script = store.client.register_script(_CANCEL_LUA)
    reply = script(
        keys=[done, status, notify, run, flag, store.delayed_key, store.delayed_env_key],
        args=[record, _ttl_ms(ttl), task_id, alive_key(store.prefix, "")],
    )
    return CancelOutcome(reply.decode() if isinstance(reply, bytes) else str(reply))


def cancel_requested(store: ResultStore, task_id: str) -> bool:
    """Whether a cancel was asked for while the task runs (its flag is set)."""
    return bool(store.client.exists(store.task_keys(task_id)[4]))
