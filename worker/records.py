"""What a task's completion record holds, and the one script that writes outcomes.

A completion record (success or final failure) is msgpack with a version; `CompletionWrite`
builds it, `decode_record` reads it. `WRITE_LUA` writes statuses, completions and retries of
any number of tasks in one call (see `ResultStore.write`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ringleader.worker import _wire
from ringleader.worker.errors import CANCELLED_TYPE, EnvelopeError, TaskCancelled, TaskError

RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class Completion:
    """How a task ended. `value()` returns the result or raises the task's error."""

    task_id: str
    ok: bool
    result: Any
    error_type: str | None
    error: str | None
    at: float
    worker_id: str | None

    @property
    def cancelled(self) -> bool:
        return not self.ok and self.error_type == CANCELLED_TYPE

    def value(self) -> Any:
        if self.ok:
            return self.result
        if self.cancelled:
            raise TaskCancelled(self.task_id, self.error or "cancelled")
        raise TaskError(self.task_id, self.error_type or "Error", self.error or "")


@dataclass(frozen=True, slots=True)
class CompletionWrite:
    """One completion for `record_many`: a success (`packed` result) or, with `error_type`, a
    final failure."""

    task_id: str
    packed: bytes | None = None
    error_type: str | None = None
    error: str | None = None
    at: float = 0.0
    worker_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def record(self) -> bytes:
        """The stored completion record."""
        return _record(
            self.ok,
            packed=self.packed if self.ok else None,
            error_type=self.error_type,
            error=self.error,
            at=self.at,
            worker_id=self.worker_id,
        )


_RECORD_KEYS = frozenset({"v", "ok", "result", "error_type", "error", "at", "worker_id"})


@dataclass(frozen=True, slots=True)
class RetryWrite:
    """A failed run whose task is retried: the next attempt's envelope waits in the delayed
    set until `due` (wall clock), and the run counts as failed (the durable attempt count)."""

    task_id: str
    due: float
    envelope: bytes  # the next attempt, encoded
    lane: int  # where it goes back to (worker.lanes: its level's topic and partition)

    @property
    def ok(self) -> bool:
        return False

    def payload(self) -> bytes:
        return b"%d|%s" % (self.lane, self.envelope)


@dataclass(frozen=True, slots=True)
class RunOf:
    """The worker process whose runs a write ends (see `worker.ledger`)."""

    start_field: str
    running_key: str


# Statuses, then completions, then retries, for any number of tasks in one call; returns a
# flag for each. A status is set unless the task already completed; a completion is written
# once (SET NX) with a wake-up token, and its flag says whether the stored record is this one
# (so a retry of a write whose reply was lost still counts as recorded; a record carries its
# time and worker, so another execution's is never byte-equal). A completed task's status is
# read from its record, so the script writes no status key for it. A retry parks the next
# attempt in the delayed set and counts the failed run once: only while this run's start is
# still recorded (a write retried after a lost reply must not count it twice). With a start
# field (a worker's write), completions, retries and parking statuses end the run: its start
# and its entry in the worker's running hash go.
# KEYS: running, delayed, delayed env, then per status (done, status, run), per completion
# (done, notify, run), per retry (done, status, run).
# ARGV: ttl_ms, number of statuses, number of completions, start field ('' for none), then
# per status (value, ends-run flag, task id), per completion (record, task id), per retry
# (task id, due, payload).
WRITE_LUA = """
local ttl = ARGV[1]
local ns, nc = tonumber(ARGV[2]), tonumber(ARGV[3])
local start = ARGV[4]
local running, delayed, denv = KEYS[1], KEYS[2], KEYS[3]
local out = {}
local k, a = 4, 5
local function ended(run, tid)
  if start ~= '' then
    redis.call('HDEL', run, start)
    redis.call('HDEL', running, tid)
  end
end
for i = 1, ns do
  if redis.call('EXISTS', KEYS[k]) == 0 then
    redis.call('SET', KEYS[k + 1], ARGV[a], 'PX', ttl)
    out[i] = 1
  else
    out[i] = 0
  end
  if ARGV[a + 1] == '1' then ended(KEYS[k + 2], ARGV[a + 2]) end
  k, a = k + 3, a + 3
end
for i = ns + 1, ns + nc do
  if redis.call('SET', KEYS[k], ARGV[a], 'NX', 'PX', ttl) then
    redis.call('RPUSH', KEYS[k + 1], '1')
    redis.call('PEXPIRE', KEYS[k + 1], ttl)
    out[i] = 1
  elseif redis.call('GET', KEYS[k]) == ARGV[a] then
    out[i] = 1  -- this very record: a retry after a write whose reply was lost
  else
    out[i] = 0
  end
  if start ~= '' then
    redis.call('DEL', KEYS[k + 2])
    redis.call('HDEL', running, ARGV[a + 1])
  end
  k, a = k + 3, a + 2
end
for i = ns + nc + 1, (#KEYS - 3) / 3 do
  if redis.call('EXISTS', KEYS[k]) == 0 then
    if start == '' or redis.call('HDEL', KEYS[k + 2], start) == 1 then
      redis.call('HINCRBY', KEYS[k + 2], 'f', 1)
    end
    redis.call('PEXPIRE', KEYS[k + 2], ttl)
    redis.call('ZADD', delayed, ARGV[a + 1], ARGV[a])
    redis.call('HSET', denv, ARGV[a], ARGV[a + 2])
    redis.call('SET', KEYS[k + 1], 'retrying', 'PX', ttl)
    out[i] = 1
  else
    out[i] = 0
  end
  ended(KEYS[k + 2], ARGV[a])
  k, a = k + 3, a + 3
end
return out
"""


def _record(
    ok: bool,
    *,
    packed: bytes | None,
    error_type: str | None,
    error: str | None,
    at: float,
    worker_id: str | None,
) -> bytes:
    return _wire.pack(
        {
            "v": RECORD_VERSION,
            "ok": ok,
            "result": packed,  # nested msgpack, so a stored result is never re-encoded
            "error_type": error_type,
            "error": error,
            "at": float(at),
            "worker_id": worker_id,
        }
    )


def decode_record(task_id: str, raw: bytes) -> Completion:
    what = "completion record"
    obj = _wire.unpack_map(raw, what, RECORD_VERSION)
    _wire.check_keys(obj, _RECORD_KEYS, what)
    ok = obj["ok"]
    if type(ok) is not bool:
        _wire.fail(what, "ok", "a bool", ok)
    result: Any = None
    if ok:
        packed = _wire.get_bytes(obj, "result", what)
        try:
            result = msgpack.unpackb(packed, raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as e:
            raise EnvelopeError(f"{what}: result is not msgpack: {e}") from e
    return Completion(
        task_id=task_id,
        ok=ok,
        result=result,
        error_type=_wire.get_opt_str(obj, "error_type", what, nonempty=False),
        error=_wire.get_opt_str(obj, "error", what, nonempty=False),
        at=_wire.get_time(obj, "at", what),
        worker_id=_wire.get_opt_str(obj, "worker_id", what),
    )
