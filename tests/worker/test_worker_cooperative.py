"""Cooperative rebalancing with real worker processes, on Apache Kafka and Tansu (DESIGN.md
invariants 1, 2 and 6).

Four workers run 30-second tasks on some of their twelve partitions; a fifth joins, one of the
four is SIGKILLed, then one is SIGTERMed (its drain bound, 60 s, lets its tasks finish). The
counting app's `long` task records each start and each end with the worker's pid in Redis; the
committed generations are read back from `<ns>.assignments`. Held:
* no task starts twice, except the SIGKILLed worker's in-flight ones (each once more, elsewhere);
* no task is interrupted: every other run starts and ends on the same worker, once, on the
  partition's owner; runs of one partition on different workers never overlap in time;
* every task completes;
* only the partitions balance needs move (counted against the minimum for each change), and
  the ones that move at the join are idle ones;
* the SIGTERMed worker keeps its partitions (nobody runs them) until its tasks have finished.
A short eager run shows the contrast: there a join revokes every worker's partitions.

The ledger's start records are off (RINGLEADER_CRASH_LIMIT=0): they would hide a partition
given away while its old owner still runs a task (its WAIT verdict holds the second start
back), and a crashed task's rerun would run alone, stalling its new owner's other work.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from ringleader.client import Client, TaskHandle
from ringleader.coordinator.assignment import Assignment
from ringleader.coordinator.twophase import Applied
from ringleader.coordinator.txlog import TxLogError, TxLogReader
from ringleader.worker.routing import partition_for, topics
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.broker, pytest.mark.redis, pytest.mark.slow]

PARTITIONS = 12
LONG = 30.0  # seconds a long task sleeps
DRAIN = 60  # RINGLEADER_WORKER_DRAIN_TIMEOUT: long enough for a long task to finish
CONCURRENCY = 8  # handler threads: long tasks never wait for a free one
SETTLE = 90.0  # seconds a rebalance may take on a busy 2-core machine


@pytest.fixture
def settings(broker: str, redis_url: str, unique_name: str) -> AppSettings:
    return procs.namespace(broker, redis_url, unique_name, PARTITIONS)


@pytest.fixture
def client(settings: AppSettings) -> Iterator[Client]:
    c = Client(settings=settings)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def ledger(settings: AppSettings) -> Iterator[Ledger]:
    led = Ledger(settings.bootstrap, topics(settings.namespace).assignments)
    try:
        yield led
    finally:
        led.close()


# --- the committed generations ------------------------------------------------------------


class Ledger:
    """Every generation committed on the assignments topic, in log order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._reader = TxLogReader(bootstrap, topic, "assign")
        self.generations: list[Assignment] = []

    def refresh(self) -> list[Assignment]:
        try:
            outcomes = self._reader.read_available(10)
        except TxLogError:
            return self.generations  # not readable yet (a new topic): next time
        for o in outcomes:
            if isinstance(o, Applied):
                self.generations.append(Assignment.from_parts(o.parts))
        return self.generations

    def mark(self) -> int:
        """Where the next phase's generations start."""
        return len(self.refresh())

    def since(self, mark: int) -> list[Assignment]:
        return self.refresh()[mark:]

    def close(self) -> None:
        self._reader.close()


def owners_by_partition(a: Assignment) -> dict[int, str]:
    return {p: w for w, ps in a.by_worker().items() for p in ps}


def settled(
    ledger: Ledger, ws: Mapping[str, procs.WorkerProc], expected: set[str], protocol: str
) -> Assignment | None:
    """The newest committed generation, if it is the settled one for `expected` workers:
    every partition owned once, balanced, nothing being revoked, applied by each of them."""
    gens = ledger.refresh()
    if not gens:
        return None
    a = gens[-1]
    if set(a.workers.values()) != expected:
        return None
    assert a.protocol == protocol, f"generation {a.generation} runs {a.protocol}, not {protocol}"
    if a.revoking or len(a.workers) != len(a.owners):
        return None
    counts = [len(ps) for ps in a.owners.values()]
    if sorted(p for ps in a.owners.values() for p in ps) != list(range(PARTITIONS)):
        return None
    if max(counts) - min(counts) > 1:
        return None
    applied = f"generation {a.generation} applied:"
    if not all(applied in ws[w].log_text() for w in expected):
        return None
    return a


def wait_settled(
    ledger: Ledger,
    ws: Mapping[str, procs.WorkerProc],
    expected: set[str],
    protocol: str = "cooperative",
) -> Assignment:
    found: list[Assignment] = []

    def done() -> bool:
        a = settled(ledger, ws, expected, protocol)
        if a is not None:
            found.append(a)
        return a is not None

    procs.wait_until(done, SETTLE, f"a settled generation of {sorted(expected)}", interval=0.5)
    return found[-1]


def min_revocations(before: Assignment, survivors: set[str], partitions: int) -> int:
    """The fewest partitions that must be taken from surviving owners to balance `survivors`
    over `partitions`: the larger quotas go to those owning the most."""
    owned = before.by_worker()
    base, extra = divmod(partitions, len(survivors))
    counts = sorted((len(owned.get(w, [])) for w in survivors), reverse=True)
    return sum(max(0, c - (base + (1 if i < extra else 0))) for i, c in enumerate(counts))


def moves(before: Assignment, gens: Sequence[Assignment], survivors: set[str]) -> list[Move]:
    """Partitions taken from a surviving owner, through the generations of a phase (a
    partition owned by nobody for a while, between its release and its new owner, is no
    move of its own)."""
    out: list[Move] = []
    owner = owners_by_partition(before)
    for a in gens:
        now = owners_by_partition(a)
        for p, w in now.items():
            was = owner.get(p)
            if was is not None and was != w and was in survivors:
                out.append(Move(p, was, w, a.generation))
            owner[p] = w
    return out


@dataclass(frozen=True)
class Move:
    partition: int
    src: str
    dst: str
    generation: int

    def __repr__(self) -> str:
        return f"p{self.partition} {self.src}->{self.dst} (generation {self.generation})"


# --- what the workers ran -------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    task_id: str
    pid: int
    at: float


def _runs(redis_url: str, key: str) -> list[Run]:
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    try:
        lines = [b.decode().split() for b in r.lrange(key, 0, -1)]
    finally:
        r.close()
    return [Run(f[0], int(f[1]), float(f[3])) for f in lines]


def starts(settings: AppSettings) -> list[Run]:
    return _runs(settings.redis, f"{settings.namespace}:log")


def ends(settings: AppSettings) -> list[Run]:
    return _runs(settings.redis, f"{settings.namespace}:ends")


def started_ids(settings: AppSettings) -> set[str]:
    return {r.task_id for r in starts(settings)}


def revoked_in(text: str) -> list[int]:
    """Partitions the worker's rebalance handler let go of, in a slice of its log."""
    out: list[int] = []
    for m in re.finditer(r" revoked \[([\d, ]*)\] in ", text):
        out.extend(int(x) for x in m.group(1).split(",") if x.strip())
    return out


def keys_by_partition() -> dict[int, str]:
    """A key that lands on each partition (Kafka's murmur2 partitioner)."""
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < PARTITIONS:
        k = f"key-{i}"
        p = partition_for(k, PARTITIONS)
        assert p is not None
        keys.setdefault(p, k)
        i += 1
    return keys


KEYS = keys_by_partition()


def submit_on(client: Client, name: str, partition: int, **kwargs: object) -> TaskHandle:
    h = client.submit(name, kwargs=kwargs, key=KEYS[partition])
    assert h.partition == partition
    return h


def log_marks(ws: Mapping[str, procs.WorkerProc]) -> dict[str, int]:
    return {w: len(wp.log_text()) for w, wp in ws.items()}


def overlaps(intervals: Sequence[tuple[float, float, int]]) -> list[tuple[object, object]]:
    """Pairs of (start, end, pid) intervals of different pids that overlap in time."""
    bad: list[tuple[object, object]] = []
    for i, a in enumerate(intervals):
        for b in intervals[i + 1 :]:
            if a[2] != b[2] and max(a[0], b[0]) < min(a[1], b[1]):
                bad.append((a, b))
    return bad


# --- the tests --------------------------------------------------------------------------------


def test_join_kill_and_graceful_stop_move_only_what_balance_needs_and_interrupt_nothing(
    settings: AppSettings, client: Client, ledger: Ledger, tmp_path: Path
) -> None:
    extra = {"RINGLEADER_WORKER_DRAIN_TIMEOUT": str(DRAIN), "RINGLEADER_CRASH_LIMIT": "0"}
    with procs.workers_of(settings, tmp_path, extra=extra) as workers:
        ws: dict[str, procs.WorkerProc] = {}
        for i in range(4):
            ws[f"w{i}"] = workers.start(f"w{i}", concurrency=CONCURRENCY)
        pid_of = {w: wp.proc.pid for w, wp in ws.items()}
        worker_of = {pid: w for w, pid in pid_of.items()}
        originals = {"w0", "w1", "w2", "w3"}
        a1 = wait_settled(ledger, ws, originals)
        assert sorted(len(ps) for ps in a1.owners.values()) == [3, 3, 3, 3]
        owner1 = owners_by_partition(a1)

        # Long tasks on two of each worker's three partitions; the third stays idle.
        busy = sorted(p for ps in a1.by_worker().values() for p in sorted(ps)[:2])
        longs = {p: submit_on(client, "long", p, seconds=LONG) for p in busy}
        long_of: dict[str, int] = {h.id: p for p, h in longs.items()}
        procs.wait_until(
            lambda: set(long_of) <= started_ids(settings), 60, "the long tasks to start"
        )
        everything: list[TaskHandle] = list(longs.values())

        # --- a fifth worker joins: two idle partitions move to it, nothing else ----------
        mark, logs = ledger.mark(), log_marks(ws)
        ws["w4"] = workers.start("w4", concurrency=CONCURRENCY)
        pid_of["w4"] = ws["w4"].proc.pid
        worker_of[pid_of["w4"]] = "w4"
        members2 = originals | {"w4"}
        a2 = wait_settled(ledger, ws, members2)
        joined = moves(a1, ledger.since(mark), members2)
        assert min_revocations(a1, members2, PARTITIONS) == 2
        assert len(joined) == 2, f"{len(joined)} moves at the join, 2 needed: {joined}"
        assert {m.dst for m in joined} == {"w4"}
        assert len({m.src for m in joined}) == 2, joined  # one from each of two workers
        assert not {m.partition for m in joined} & set(busy), "a busy partition moved"
        assert sorted(a2.by_worker()["w4"]) == sorted(m.partition for m in joined)
        for w in originals:
            given_up = sorted(m.partition for m in joined if m.src == w)
            assert sorted(revoked_in(ws[w].log_text()[logs[w] :])) == given_up, w
        # The long tasks still run where they began; the moved partitions serve at once.
        assert not {r.task_id for r in ends(settings)} & set(long_of)
        wave = [submit_on(client, "count", p, n=p) for p in range(PARTITIONS)]
        assert [h.result(timeout=60) for h in wave] == list(range(PARTITIONS))
        everything += wave

        # --- one of the four is SIGKILLed while its long tasks run ------------------------
        victim = "w1"
        running = set(long_of) - {r.task_id for r in ends(settings)}
        in_flight = {t for t in running if owner1[long_of[t]] == victim}
        assert in_flight, "the victim has no long task running"
        mark, logs = ledger.mark(), log_marks(ws)
        before = ledger.refresh()[-1]
        killed_at = time.time()
        ws[victim].kill()
        ws[victim].wait(10)
        members3 = members2 - {victim}
        a3 = wait_settled(ledger, ws, members3)
        assert min_revocations(before, members3, PARTITIONS) == 0
        assert moves(before, ledger.since(mark), members3) == []
        for w in members3:
            assert revoked_in(ws[w].log_text()[logs[w] :]) == [], w
        was = owners_by_partition(before)
        changed = {p for p, w in owners_by_partition(a3).items() if w != was[p]}
        assert changed == set(before.by_worker()[victim])

        # --- one is SIGTERMed with long tasks mid-run: it drains them, then leaves ---------
        leaver = "w2"
        mine = sorted(a3.by_worker()[leaver])
        fresh = {p: submit_on(client, "long", p, seconds=LONG) for p in mine}
        fresh_ids = {h.id for h in fresh.values()}
        procs.wait_until(
            lambda: fresh_ids <= started_ids(settings), 60, "the leaver's long tasks to start"
        )
        everything += fresh.values()
        for h in fresh.values():
            (run,) = [r for r in starts(settings) if r.task_id == h.id]
            assert worker_of[run.pid] == leaver
        mark, logs = ledger.mark(), log_marks(ws)
        ws[leaver].terminate()
        procs.wait_until(
            lambda: ": leave" in ws[leaver].log_text()[logs[leaver] :], 30, "the leaver to release"
        )
        # Tasks submitted during the drain: the leaver's partitions wait for their new owner,
        # the others run at once. (Before the leaver has taken the signal in, it may still start
        # one: it owns the partition until then.)
        waiting = [submit_on(client, "count", p, n=p) for p in mine]
        others = [p for p in range(PARTITIONS) if p not in mine]
        during = [submit_on(client, "count", p, n=p) for p in others]
        assert [h.result(timeout=30) for h in during] == others
        assert ws[leaver].wait(DRAIN + 30) == 0
        members4 = members3 - {leaver}
        a4 = wait_settled(ledger, ws, members4)
        assert min_revocations(a3, members4, PARTITIONS) == 0
        assert moves(a3, ledger.since(mark), members4) == []
        for w in members4:
            assert revoked_in(ws[w].log_text()[logs[w] :]) == [], w
        assert sorted(revoked_in(ws[leaver].log_text()[logs[leaver] :])) == mine
        was = owners_by_partition(a3)
        changed = {p for p, w in owners_by_partition(a4).items() if w != was[p]}
        assert changed == set(mine)
        assert [h.result(timeout=60) for h in waiting] == mine
        everything += waiting + during

        # --- every task completes ------------------------------------------------------------
        results = [h.result(timeout=3 * LONG) for h in everything]
        assert len(results) == len(everything)

    # --- what ran where (the workers are stopped; the records are complete) -------------
    started, ended = starts(settings), ends(settings)
    partition_of = {h.id: h.partition for h in everything}
    by_task: dict[str, list[Run]] = {}
    for r in started:
        by_task.setdefault(r.task_id, []).append(r)
    end_of: dict[str, list[Run]] = {}
    for r in ended:
        end_of.setdefault(r.task_id, []).append(r)
    assert set(by_task) == set(partition_of), "a task never started, or a stranger ran"
    for h in everything:
        runs, fin = by_task[h.id], end_of.get(h.id, [])
        if h.id in in_flight:
            # The SIGKILLed worker's run, then one more on the partition's new owner.
            assert runs[0].pid == pid_of[victim], runs
            assert len(runs) == 2 and len(fin) == 1, (runs, fin)
            assert fin[0].pid == runs[1].pid != pid_of[victim]
            assert runs[1].at >= killed_at
            continue
        assert len(runs) == 1, f"task {h.id} (partition {h.partition}) started {len(runs)} times"
        if h.name == "long":
            assert len(fin) == 1 and fin[0].pid == runs[0].pid, (runs, fin)
            assert fin[0].at - runs[0].at >= LONG - 0.5
    # The originals' long tasks ran on the partition's owner of the time; the leaver's too.
    for t, p in long_of.items():
        if t not in in_flight:
            assert worker_of[by_task[t][0].pid] == owner1[p]
    # What was submitted during the drain ran only after the leaver had finished its tasks.
    for h in waiting:
        (run,) = by_task[h.id]
        assert worker_of[run.pid] != leaver
        (drained,) = end_of[fresh[h.partition or 0].id]
        assert run.at > drained.at, "a new owner started a task while the leaver still ran one"
    # Invariant 1 from the tasks' side: runs of one partition on two workers never overlap.
    for p in range(PARTITIONS):
        spans: list[tuple[float, float, int]] = []
        for t, runs in by_task.items():
            if partition_of[t] != p:
                continue
            fins = {r.pid: r.at for r in end_of.get(t, [])}
            for r in runs:
                default = killed_at if r.pid == pid_of[victim] else r.at
                spans.append((r.at, fins.get(r.pid, default), r.pid))
        assert overlaps(spans) == [], f"partition {p}"


def test_eager_join_revokes_every_workers_partitions(
    settings: AppSettings, ledger: Ledger, tmp_path: Path
) -> None:
    """The contrast (so the test above would catch a regression to eager): with
    RINGLEADER_REBALANCE_PROTOCOL=eager a join takes everything from everyone."""
    extra = {"RINGLEADER_REBALANCE_PROTOCOL": "eager"}
    with procs.workers_of(settings, tmp_path, extra=extra) as workers:
        ws = {w: workers.start(w, concurrency=2) for w in ("w0", "w1")}
        a1 = wait_settled(ledger, ws, {"w0", "w1"}, protocol="eager")
        logs = log_marks(ws)
        ws["w2"] = workers.start("w2", concurrency=2)
        wait_settled(ledger, ws, {"w0", "w1", "w2"}, protocol="eager")
        for w in ("w0", "w1"):
            revoked = revoked_in(ws[w].log_text()[logs[w] :])
            assert set(a1.by_worker()[w]) <= set(revoked), (w, revoked)
        assert min_revocations(a1, {"w0", "w1", "w2"}, PARTITIONS) == 4
