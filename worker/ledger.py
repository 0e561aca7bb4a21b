"""What each task's runs leave in Redis, so that nothing about them lives in one worker's memory.

Per task (keys share the task's hash tag, beside its completion record):
* `<prefix>:{id}:run`, a hash: `f`, the number of failed runs (the durable attempt count: the
  next run is attempt f + 1); and `s:<incarnation>` = "<worker id> <time>", one per run
  that has begun and not ended. A worker writes its start *before* the task runs and removes
  it with the run's outcome (completion, retry, park), in the same round trip that records
  the outcome. A start whose worker process is gone (its `alive` key expired) is a crash.

Per worker process (incarnation, a random id per process, so a restarted worker with the
same worker id is a different incarnation): `<prefix>:alive:<incarnation>`, renewed while
the process lives, with a TTL of about the group's session timeout; and
`<prefix>:running:<worker id>`, task id -> "<name> <time>" of its runs in progress (what a
supervisor reads to say which task a dead child was running).

Before a run begins (`TaskLedger.begin`, one script), the ledger decides:
* DONE — the task already completed: skip it;
* WAIT — a live worker has a run of it in progress (it kept running after its partition moved
  on): ask again later; when that run ends or its worker dies, the answer changes;
* STALE — this copy's attempt already ran (a duplicate of a retry that was moved twice): skip;
* QUARANTINE — runs of it crashed their worker `crash_limit` times: dead-letter it, do not run;
* SUSPECT — a run of it crashed a worker before: nothing is recorded; the worker begins it
  again `alone` (no other run in progress in the process, every earlier one recorded), so
  that if it kills this worker too, no innocent task's run dies with it;
* RUN — the run is recorded; `attempt` is the durable attempt number.

Retries wait in `<prefix>:delayed` (a sorted set by due time, the envelope of the next
attempt in `<prefix>:delayed:env`), not in a worker's memory, so a waiting retry holds back
no offset commit and survives its worker. The group leader's `DelayedMover` puts due ones
back on the task topic (see `worker.mover`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import redis as redis_lib

__all__ = [
    "Begin",
    "Crash",
    "Delayed",
    "DelayedSet",
    "RunningTask",
    "TaskLedger",
    "Verdict",
    "new_incarnation",
]


def new_incarnation() -> str:
    return os.urandom(8).hex()


class Verdict(Enum):
    RUN = "run"
    DONE = "done"
    WAIT = "wait"
    STALE = "stale"
    QUARANTINE = "quarantine"
    SUSPECT = "suspect"  # it crashed a worker before: begin again once it can run alone


@dataclass(frozen=True, slots=True)
class Crash:
    """A run of the task that died with its worker."""

    worker_id: str
    at: float

    def __str__(self) -> str:
        return f"{self.worker_id} at {self.at:.3f}"


@dataclass(frozen=True, slots=True)
class Begin:
    verdict: Verdict
    attempt: int = 0  # the durable attempt number (RUN)
    crashes: tuple[Crash, ...] = ()


@dataclass(frozen=True, slots=True)
class RunningTask:
    task_id: str
    name: str
    started_at: float


# KEYS: done, run, running. ARGV: alive prefix, incarnation, worker id, now, crash limit,
# the envelope's attempt, ttl ms, task id, task name, whether it may run alone ('1').
_BEGIN_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'done'} end
local h = redis.call('HGETALL', KEYS[2])
local failed, crashes, live = 0, {}, false
local mine = 's:' .. ARGV[2]
for i = 1, #h, 2 do
  local f, v = h[i], h[i + 1]
  if f == 'f' then
    failed = tonumber(v)
  elseif string.sub(f, 1, 2) == 's:' and f ~= mine then
    if redis.call('EXISTS', ARGV[1] .. string.sub(f, 3)) == 1 then
      live = true
    else
      crashes[#crashes + 1] = v
    end
  end
end
if live then return {'wait'} end
if tonumber(ARGV[6]) < failed + 1 then return {'stale'} end
if #crashes >= tonumber(ARGV[5]) then
  return {'quarantine', tostring(failed), unpack(crashes)}
end
if #crashes > 0 and ARGV[10] ~= '1' then
  return {'suspect', tostring(failed), unpack(crashes)}
end
redis.call('HSET', KEYS[2], mine, ARGV[3] .. ' ' .. ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('HSET', KEYS[3], ARGV[8], ARGV[9] .. ' ' .. ARGV[4])
return {'run', tostring(math.max(failed + 1, tonumber(ARGV[6]))), unpack(crashes)}
"""


class TaskLedger:
    """One worker process's view of the per-task run records."""

    def __init__(
        self,
        client: redis_lib.Redis[bytes],
        prefix: str,
        *,
        worker_id: str,
        incarnation: str,
        crash_limit: int,
        ttl: float,
    ) -> None:
        self._r = client
        self._prefix = prefix
        self.worker_id = worker_id
        self.incarnation = incarnation
        self.crash_limit = crash_limit
        self._ttl_ms = max(1, round(ttl * 1000))
        self._begin = client.register_script(_BEGIN_LUA)

    # ---- keys (the write script in worker.results uses the same) ----------------------

    @property
    def start_field(self) -> str:
        return f"s:{self.incarnation}"

    @property
    def alive_key(self) -> str:
        return alive_key(self._prefix, self.incarnation)

    @property
    def running_key(self) -> str:
        return running_key(self._prefix, self.worker_id)

    # ---- a run ------------------------------------------------------------------------

    def begin(
        self, task_id: str, name: str, attempt: int, now: float, *, alone: bool = False
    ) -> Begin:
        """Decide whether this copy of a task may run now, and record its start if so. A
        task with crashes is only started `alone` (SUSPECT otherwise, nothing recorded)."""
        base = f"{self._prefix}:{{{task_id}}}"
        reply = self._begin(
            keys=[f"{base}:done", f"{base}:run", self.running_key],
            args=[
                f"{self._prefix}:alive:",
                self.incarnation,
                self.worker_id,
                repr(now),
                self.crash_limit,
                attempt,
                self._ttl_ms,
                task_id,
                name,
                "1" if alone else "0",
            ],
        )
        verdict = Verdict(_text(reply[0]))
        if verdict not in (Verdict.RUN, Verdict.QUARANTINE, Verdict.SUSPECT):
            return Begin(verdict)
        crashes = tuple(_crash(_text(v)) for v in reply[2:])
        n = int(_text(reply[1]))
        return Begin(verdict, attempt=n if verdict is Verdict.RUN else n + 1, crashes=crashes)

    # ---- this process -----------------------------------------------------------------

    def beat(self, ttl: float) -> None:
        """This incarnation is alive for `ttl` more seconds."""
        self._r.set(self.alive_key, self.worker_id, px=max(1, round(ttl * 1000)))

    def retire(self) -> None:
        """A clean stop: every run has ended; nothing of this process can crash any more."""
        self._r.delete(self.alive_key, self.running_key)


class DelayedSet:
    """Tasks waiting for a time (retries), scored by it: `<prefix>:delayed` with their
    envelopes in `<prefix>:delayed:env` (written by `ResultStore.write`)."""

    def __init__(self, client: redis_lib.Redis[bytes], prefix: str) -> None:
        self._r = client
        self.key = delayed_key(prefix)
        self.env_key = delayed_env_key(prefix)
        self._due = client.register_script(_DUE_LUA)
        self._moved = client.register_script(_MOVED_LUA)

    def due(self, now: float, limit: int) -> list[Delayed]:
        """Up to `limit` tasks due by `now`, earliest first (they stay until `moved`)."""
        reply = self._due(keys=[self.key, self.env_key], args=[repr(now), limit])
        out = []
        for i in range(0, len(reply), 3):
            tid, score, payload = reply[i], reply[i + 1], reply[i + 2]
            part, _, env = bytes(payload).partition(b"|")
            out.append(Delayed(_text(tid), _text(score), int(part), env))
        return out

    def moved(self, item: Delayed) -> bool:
        """The task is back on the topic: forget it, unless it was parked again meanwhile
        (another score)."""
        return bool(self._moved(keys=[self.key, self.env_key], args=[item.task_id, item.score]))

    def __len__(self) -> int:
        return int(self._r.zcard(self.key))


@dataclass(frozen=True, slots=True)
class Delayed:
    task_id: str
    score: str  # as Redis returned it, to compare when removing
    partition: int
    envelope: bytes


# KEYS: delayed, env. ARGV: now, limit. Returns id, score, payload triples; an id whose
# envelope is missing (half-written by hand) is dropped from the set.
_DUE_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #ids, 2 do
  local env = redis.call('HGET', KEYS[2], ids[i])
  if env then
    out[#out + 1] = ids[i]
    out[#out + 1] = ids[i + 1]
    out[#out + 1] = env
  else
    redis.call('ZREM', KEYS[1], ids[i])
  end
end
return out
"""

# KEYS: delayed, env. ARGV: id, score.
_MOVED_LUA = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def delayed_key(prefix: str) -> str:
    return f"{prefix}:delayed"


def delayed_env_key(prefix: str) -> str:
    return f"{prefix}:delayed:env"


def alive_key(prefix: str, incarnation: str) -> str:
    return f"{prefix}:alive:{incarnation}"


def running_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}:running:{worker_id}"


def running(client: redis_lib.Redis[bytes], prefix: str, worker_id: str) -> list[RunningTask]:
    """The runs a worker had in progress (all of them, if it died): for a supervisor's log."""
    out = []
    for tid, raw in sorted(client.hgetall(running_key(prefix, worker_id)).items()):
        name, _, at = _text(raw).rpartition(" ")
        out.append(RunningTask(_text(tid), name, float(at)))
    return out


def clear_running(client: redis_lib.Redis[bytes], prefix: str, worker_id: str) -> None:
    client.delete(running_key(prefix, worker_id))


def describe_crashes(crashes: Sequence[Crash]) -> str:
    return ", ".join(str(c) for c in crashes)


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _crash(value: str) -> Crash:
    worker_id, _, at = value.rpartition(" ")
    return Crash(worker_id, float(at))
