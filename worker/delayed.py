"""Tasks waiting in Redis for a time, so a waiting task holds back no offset commit, takes no
worker memory and survives every worker: `<prefix>:delayed`, a sorted set by due time, with
each task's lane (`worker.lanes`: its level's topic and partition) and envelope in
`<prefix>:delayed:env`. Retries are parked there by
`ResultStore.write`; tasks submitted with a countdown or eta by `DelayedSet.schedule` (the
Client), never reaching the topic before their time. The group leader's `LedgerKeeper` moves
due ones onto the task topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis as redis_lib


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class DelayedSet:
    """Tasks waiting for a time (retries), scored by it: `<prefix>:delayed` with their
    envelopes in `<prefix>:delayed:env` (written by `ResultStore.write`)."""

    def __init__(self, client: redis_lib.Redis[bytes], prefix: str) -> None:
        self._r = client
        self.key = delayed_key(prefix)
        self.env_key = delayed_env_key(prefix)
        self._due = client.register_script(_DUE_LUA)
        self._moved = client.register_script(_MOVED_LUA)
        self._schedule = client.register_script(_SCHEDULE_LUA)

    def schedule(self, entries: Sequence[Scheduled], ttl_ms: int) -> list[bool]:
        """Park submitted tasks until their due time, with status `scheduled`; one round
        trip. False for a task already completed or already waiting (the same idempotency
        key submitted twice keeps its first time)."""
        if not entries:
            return []
        keys: list[str] = [self.key, self.env_key]
        args: list[str | bytes | int] = [ttl_ms]
        for e in entries:
            keys += (e.done_key, e.status_key)
            args += (e.task_id, repr(e.due), b"%d|%s" % (e.lane, e.envelope))
        return [bool(x) for x in self._schedule(keys=keys, args=args)]

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
        return self.moved_many([item]) == 1

    def moved_many(self, items: Sequence[Delayed]) -> int:
        """`moved` for many tasks in one round trip; how many were forgotten."""
        if not items:
            return 0
        args: list[str] = []
        for item in items:
            args += (item.task_id, item.score)
        return int(self._moved(keys=[self.key, self.env_key], args=args))

    def __len__(self) -> int:
        return int(self._r.zcard(self.key))


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A submitted task to park until `due` (wall clock)."""

    task_id: str
    due: float
    lane: int  # worker.lanes: the level's topic and partition it goes to
    envelope: bytes
    done_key: str  # its completion record and status (`ResultStore.task_keys`)
    status_key: str


@dataclass(frozen=True, slots=True)
class Delayed:
    task_id: str
    score: str  # as Redis returned it, to compare when removing
    lane: int
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

# KEYS: delayed, env. ARGV: id, score pairs. Returns how many were forgotten.
_MOVED_LUA = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    n = n + 1
  end
end
return n
"""


# KEYS: delayed, env, then per task (done, status). ARGV: ttl ms, then per task (id, due,
# payload). A task already completed, or already waiting, is left as it is.
_SCHEDULE_LUA = """
local out = {}
local k, a = 3, 2
for i = 1, (#KEYS - 2) / 2 do
  local fresh = redis.call('EXISTS', KEYS[k]) == 0
  if fresh and redis.call('ZADD', KEYS[1], 'NX', ARGV[a + 1], ARGV[a]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[a], ARGV[a + 2])
    redis.call('SET', KEYS[k + 1], 'scheduled', 'PX', ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
  k, a = k + 2, a + 3
end
return out
"""


def delayed_key(prefix: str) -> str:
    return f"{prefix}:delayed"


def delayed_env_key(prefix: str) -> str:
    return f"{prefix}:delayed:env"
