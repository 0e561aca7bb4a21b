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
* CANCELLED — a cancel was requested while an earlier run of it ran (`worker.cancel`'s flag),
  and that run ended without finishing it (it failed and is retried, or its worker died):
  record it cancelled, do not run it again;
* QUARANTINE — runs of it crashed their worker `crash_limit` times: dead-letter it, do not run;
* SUSPECT — a run of it crashed a worker before: nothing is recorded; the worker begins it
  again `alone` (no other run in progress in the process, every earlier one recorded), so
  that if it kills this worker too, no innocent task's run dies with it;
* RUN — the run is recorded; `attempt` is the durable attempt number.

Retries wait in `<prefix>:delayed` (a sorted set by due time, the envelope of the next
attempt in `<prefix>:delayed:env`), not in a worker's memory, so a waiting retry holds back
no offset commit and survives its worker. The group leader's `DelayedMover` puts due ones
back on the task topic (the set is `worker.delayed.DelayedSet`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import redis as redis_lib

log = logging.getLogger("ringleader.worker.ledger")

__all__ = [
    "Begin",
    "BeginRequest",
    "Crash",
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
    CANCELLED = "cancelled"  # a cancel was requested while an earlier run ran
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
    epoch: int = 0  # this process's claim epoch when the begin was sent (`claim_held`)


@dataclass(frozen=True, slots=True)
class RunningTask:
    task_id: str
    name: str
    started_at: float


# Any number of tasks in one call. KEYS: running, then per task (done, run, cancel flag).
# ARGV: alive prefix, incarnation, worker id, now, crash limit, ttl ms, then per task (the
# envelope's attempt, task id, task name, whether it may run alone '1'). Returns per task:
# verdict, attempt or failed count, number of crashes, the crashes.
_BEGIN_LUA = """
local mine = 's:' .. ARGV[2]
local stamp = ARGV[3] .. ' ' .. ARGV[4]
local limit = tonumber(ARGV[5])
local out = {}
local function answer(verdict, n, crashes)
  out[#out + 1] = verdict
  out[#out + 1] = tostring(n)
  out[#out + 1] = #crashes
  for _, c in ipairs(crashes) do out[#out + 1] = c end
end
local function begin(done, run, cancel, attempt, tid, name, alone)
  if redis.call('EXISTS', done) == 1 then return answer('done', 0, {}) end
  local h = redis.call('HGETALL', run)
  local failed, crashes, live = 0, {}, false
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
  if live then return answer('wait', 0, {}) end
  if attempt < failed + 1 then return answer('stale', 0, {}) end
  if redis.call('EXISTS', cancel) == 1 then return answer('cancelled', failed + 1, {}) end
  if #crashes >= limit then return answer('quarantine', failed + 1, crashes) end
  if #crashes > 0 and alone ~= '1' then return answer('suspect', failed + 1, crashes) end
  redis.call('HSET', run, mine, stamp)
  redis.call('PEXPIRE', run, ARGV[6])
  redis.call('HSET', KEYS[1], tid, name .. ' ' .. ARGV[4])
  answer('run', math.max(failed + 1, attempt), crashes)
end
local k, a = 2, 7
while k < #KEYS do
  begin(KEYS[k], KEYS[k + 1], KEYS[k + 2], tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
  k, a = k + 3, a + 4
end
return out
"""


@dataclass(frozen=True, slots=True)
class BeginRequest:
    task_id: str
    name: str
    attempt: int  # the envelope's
    alone: bool = False


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
        self._alive_until = float("inf")  # monotonic; no beat yet, no run yet
        self._epoch = 0  # beats that came after a lapse: each ends older runs' claims

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
        return self.begin_many([BeginRequest(task_id, name, attempt, alone)], now)[0]

    def begin_many(self, requests: Sequence[BeginRequest], now: float) -> list[Begin]:
        """`begin` for several tasks in one round trip."""
        epoch = self._epoch  # before the request: a lapse while it is out voids its runs
        keys = [self.running_key]
        args: list[str | int] = [
            f"{self._prefix}:alive:",
            self.incarnation,
            self.worker_id,
            repr(now),
            self.crash_limit,
            self._ttl_ms,
        ]
        for r in requests:
            base = f"{self._prefix}:{{{r.task_id}}}"
            keys += (f"{base}:done", f"{base}:run", f"{base}:cancel")
            args += (r.attempt, r.task_id, r.name, "1" if r.alone else "0")
        reply = self._begin(keys=keys, args=args)
        out: list[Begin] = []
        i = 0
        while i < len(reply):
            verdict, n, count = (
                Verdict(_text(reply[i])),
                int(_text(reply[i + 1])),
                int(reply[i + 2]),
            )
            crashes = tuple(_crash(_text(v)) for v in reply[i + 3 : i + 3 + count])
            out.append(Begin(verdict, attempt=n, crashes=crashes, epoch=epoch))
            i += 3 + count
        return out

    def abandon(self, task_id: str) -> None:
        """A run of ours stopped at a checkpoint because its claim lapsed: remove its start
        and its running entry. Left there, once this process beats again the start reads
        as a live run and the task's new owner waits on it for as long as we live. A Redis
        error is logged: the entries then go when this process's alive key does."""
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.hdel(f"{self._prefix}:{{{task_id}}}:run", self.start_field)
            pipe.hdel(self.running_key, task_id)
            pipe.execute()
        except redis_lib.RedisError as e:
            log.warning("could not clear the abandoned run of %s: %s", task_id, e)

    def cancel_requested(self, task_id: str) -> bool:
        """Whether a cancel was requested while the task runs (`worker.cancel`'s flag); a
        Redis error counts as not (a checkpoint must not fail the task)."""
        try:
            return bool(self._r.exists(f"{self._prefix}:{{{task_id}}}:cancel"))
        except redis_lib.RedisError:
            return False

    # ---- this process -----------------------------------------------------------------

    def beat(self, ttl: float) -> None:
        """This incarnation is alive for `ttl` more seconds."""
        sent = time.monotonic()  # the key may lapse `ttl` after the request left, not later
        if sent >= self._alive_until:
            # The key may have lapsed and others begun our runs: renewing it must not hand
            # them back (after SIGCONT the keeper may beat before a task's next checkpoint).
            self._epoch += 1
        self._r.set(self.alive_key, self.worker_id, px=max(1, round(ttl * 1000)))
        self._alive_until = sent + ttl

    def alive_held(self) -> bool:
        """Whether this process's alive key surely still stands: while it does, no other
        worker runs a task this process started (their begin waits). False once a beat is
        overdue: paused (SIGSTOP) or cut off from Redis past the TTL."""
        return time.monotonic() < self._alive_until

    def claim_held(self, epoch: int) -> bool:
        """Whether a run begun in `epoch` (`Begin.epoch`) is still this process's: the alive
        key surely stands and has not lapsed since the begin. Once False, False for good."""
        until = self._alive_until  # read before the epoch: `beat` writes them the other way
        return self._epoch == epoch and time.monotonic() < until

    def retire(self) -> None:
        """A clean stop: every run has ended; nothing of this process can crash any more.
        A Redis error is logged, not raised (the entries then lapse with their TTL)."""
        try:
            self._r.delete(self.alive_key, self.running_key)
        except redis_lib.RedisError as e:
            log.warning("could not retire this worker's ledger entries: %s", e)


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


def running_live(
    client: redis_lib.Redis[bytes], prefix: str, worker_ids: Sequence[str]
) -> dict[str, list[RunningTask]]:
    """`running` for several workers in three pipelined round trips (`ringleader status`),
    counting a run only while a live process vouches for it: its task's run record holds a
    start by this worker id whose incarnation is alive. A worker restarted under the same id
    without a supervisor (which clears the hash) still has its dead process's entries; those
    are left out, as is a run older than its run record's TTL (the result TTL)."""
    ids = list(dict.fromkeys(worker_ids))
    pipe = client.pipeline(transaction=False)
    for w in ids:
        pipe.hgetall(running_key(prefix, w))
    entries = [
        (w, _text(tid), _text(raw))
        for w, h in zip(ids, pipe.execute(), strict=True)
        for tid, raw in sorted(h.items())
    ]
    pipe = client.pipeline(transaction=False)
    for _, tid, _ in entries:
        pipe.hgetall(f"{prefix}:{{{tid}}}:run")
    vouching: list[set[str]] = []  # per entry: incarnations with a start of it by its worker
    for (w, _, _), h in zip(entries, pipe.execute(), strict=True):
        fields = ((_text(f), _text(v)) for f, v in h.items())
        vouching.append({f[2:] for f, v in fields if f[:2] == "s:" and v.rpartition(" ")[0] == w})
    incarnations = sorted(set[str]().union(*vouching))
    pipe = client.pipeline(transaction=False)
    for inc in incarnations:
        pipe.exists(alive_key(prefix, inc))
    alive = {i for i, n in zip(incarnations, pipe.execute(), strict=True) if n}
    out: dict[str, list[RunningTask]] = {w: [] for w in ids}
    for (w, tid, raw), incs in zip(entries, vouching, strict=True):
        if incs & alive:
            name, _, at = raw.rpartition(" ")
            out[w].append(RunningTask(tid, name, float(at)))
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
