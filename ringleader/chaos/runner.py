"""Running one chaos scenario: workers up, load on, fault in, heal, drain, judge.

A scenario (see `scenarios`) only says what fault to inject and what it allows; this module
does the rest the same way for each: a fresh namespace, three ledger-app workers, a settled
committed generation, a steady submit load, the fault, the heal, every accepted task waited
for, and the facts handed to `report.judge`, plus the checks every scenario shares (no
worker the fault spared has died, the group ends settled on the live workers).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis

from ringleader.chaos.backends.base import Backend
from ringleader.chaos.ledger import LedgerRun, parse_runs, steps_key
from ringleader.chaos.observe import (
    Committed,
    GenerationWatcher,
    Load,
    completion_events,
    worker_of,
)
from ringleader.chaos.observe import owners_by_worker as owners
from ringleader.chaos.report import Expect, Report, judge
from ringleader.chaos.stub import FlakyHTTP
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.results import ResultStore
from ringleader.worker.settings import AppSettings

__all__ = ["Injected", "Plan", "Stage", "run_scenario"]

log = logging.getLogger("ringleader.chaos")


@dataclass(frozen=True, slots=True)
class Plan:
    """How hard and how long every scenario pushes (the CLI's knobs)."""

    workers: int = 3
    partitions: int = 6
    rate: float = 20.0  # tasks submitted per second
    steps: int = 4  # steps per ledger task
    step_s: float = 0.05
    warmup_done: int = 20  # tasks completed before the fault
    load_after: float = 10.0  # seconds the load goes on after the fault (and its heal)
    drain_timeout: float = 240.0
    stall_timeout: float = 45.0  # give up when no task completed for this long


@dataclass
class Stage:
    """What a scenario's fault sees: the group as it stands just before the fault."""

    backend: Backend
    settings: AppSettings
    ledger: redis.Redis[bytes]
    workers: list[str]
    before: Committed
    watcher: GenerationWatcher
    stub: FlakyHTTP | None
    session_s: float

    @property
    def all_partitions(self) -> frozenset[int]:
        return frozenset(range(self.settings.partitions))

    @property
    def group(self) -> str:
        return f"{self.settings.namespace}.workers"

    def leader(self) -> str:
        a = self.before.assignment
        return worker_of(a, a.leader)

    def owned(self, worker_id: str) -> frozenset[int]:
        return frozenset(owners(self.before.assignment).get(worker_id, set()))

    def follower(self) -> str:
        """A worker that owns partitions and does not lead."""
        lead = self.leader()
        found = next((w for w in reversed(self.workers) if w != lead and self.owned(w)), None)
        if found is None:
            raise ScenarioError(f"no worker but the leader {lead} owns partitions")
        return found


@dataclass
class Injected:
    """What a fault did: when, which partitions it stopped, which workers it ended (and which
    of those must have exited cleanly), and how to undo it after `heal_after` seconds."""

    at: float
    affected: frozenset[int]
    ended: frozenset[str] = frozenset()
    clean_exit: frozenset[str] = frozenset()
    heal: Callable[[], None] | None = None
    heal_after: float = 0.0
    checks: list[Callable[[Stage], list[str]]] = field(default_factory=list)


class ScenarioError(Exception):
    """The scenario could not be run as designed (not an invariant: the run itself failed)."""


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            raise ScenarioError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def run_scenario(
    name: str,
    inject: Callable[[Stage], Injected],
    expect: Expect,
    backend: Backend,
    plan: Plan,
    *,
    stub: FlakyHTTP | None = None,
    cuttable: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Report:
    ns = f"chaos-{name}-{uuid.uuid4().hex[:6]}"
    settings = backend.settings(ns, plan.partitions)
    ensure_topics(settings)
    ledger: redis.Redis[bytes] = redis.Redis.from_url(backend.ledger_url)
    watcher = GenerationWatcher(settings)
    workers = [f"w{i}" for i in range(1, plan.workers + 1)]
    load: Load | None = None
    try:
        for w in workers:
            backend.start_worker(w, settings, cuttable=w == cuttable, extra_env=extra_env)
        wait_for(lambda: _settled(watcher, set(workers), plan.partitions), 120,
                 f"a committed generation covering {', '.join(workers)}")  # fmt: skip
        load = Load(settings, plan.rate, plan.steps, plan.step_s).start()
        wait_for(lambda: _done_runs(ledger, ns) >= plan.warmup_done, 60,
                 f"{plan.warmup_done} tasks to complete before the fault")  # fmt: skip
        before = watcher.last
        assert before is not None
        stage = Stage(backend, settings, ledger, workers, before, watcher, stub,
                      backend_session_s(backend))  # fmt: skip
        inj = inject(stage)
        log.debug("%s: fault at %.3f on partitions %s", name, inj.at, sorted(inj.affected))
        problems: list[str] = []
        healed_at = inj.at
        if inj.heal is not None:
            _sleep_until(inj.at + inj.heal_after)
            try:
                inj.heal()
            except Exception as e:  # noqa: BLE001 - a failed heal is reported, not raised
                problems.append(f"heal failed: {e}")
            healed_at = time.time()
        _sleep_until(healed_at + plan.load_after)
        load.stop()
        accepted = list(load.accepted)
        completed = _drain(settings, accepted, plan)
        problems += _shared_checks(stage, inj, plan)
        for check in inj.checks:
            problems += check(stage)
        runs = parse_runs(ledger.lrange(steps_key(ns), 0, -1))
        records, dead = completion_events(settings)
        if dead:
            problems.append(f"dead_letters: {dead} ledger tasks dead-lettered (none may fail)")
        gen = watcher.first_after(inj.at)
        resumed_from = inj.at if gen is None else gen.at
        report = judge(
            name,
            accepted=accepted,
            completed=completed,
            runs=[r.run for r in runs],
            completion_records=records,
            fault_at=inj.at,
            generation_at=None if gen is None else gen.at,
            first_completion_at=_first_completion(runs, load.accepted, inj, resumed_from),
            expect=expect,
            extra=problems,
        )
        return dataclasses.replace(report, refused=sum(load.refused.values()))
    finally:
        if load is not None:
            load.stop()
        backend.stop_workers()
        watcher.close()
        ledger.close()


def backend_session_s(backend: Backend) -> float:
    return backend.session_ms / 1000.0


def _settled(watcher: GenerationWatcher, live: set[str], partitions: int) -> bool:
    last = watcher.last
    if last is None:
        return False
    held = owners(last.assignment)
    owned = sorted(p for ps in held.values() for p in ps)
    return set(held) == live and owned == list(range(partitions))


def _done_runs(ledger: redis.Redis[bytes], ns: str) -> int:
    lines = ledger.lrange(steps_key(ns), -500, -1)
    return sum(1 for line in lines if line.split()[2] == b"done")


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _drain(settings: AppSettings, accepted: Sequence[str], plan: Plan) -> set[str]:
    """Wait until every accepted task has completed, or none completed for a while."""
    store = ResultStore.from_url(settings.redis, settings.namespace)
    done: set[str] = set()
    deadline = time.monotonic() + plan.drain_timeout
    last_progress = time.monotonic()
    while len(done) < len(accepted) and time.monotonic() < deadline:
        if time.monotonic() - last_progress > plan.stall_timeout:
            break
        todo = [t for t in accepted if t not in done]
        try:
            flags = store.completed_many(todo)
        except redis.RedisError:
            flags = []
        newly = {t for t, f in zip(todo, flags, strict=False) if f}
        if newly:
            done |= newly
            last_progress = time.monotonic()
        time.sleep(0.5)
    store.client.close()
    return done


def _shared_checks(stage: Stage, inj: Injected, plan: Plan) -> list[str]:
    out: list[str] = []
    b = stage.backend
    for w in stage.workers:
        if w in inj.ended:
            if w in inj.clean_exit and b.exit_code(w) != 0:
                out.append(f"{w} did not exit cleanly on its stop (exit {b.exit_code(w)})")
        elif not b.alive(w):
            out.append(f"crashed: {w} exited ({b.exit_code(w)}) though the fault spared it")
    live = {w for w in stage.workers if b.alive(w)}
    try:
        wait_for(lambda: _settled(stage.watcher, live, plan.partitions), 60,
                 "the group to settle on the live workers")  # fmt: skip
    except ScenarioError as e:
        last = stage.watcher.last
        seen = "none" if last is None else f"{owners(last.assignment)}"
        out.append(f"unsettled: {e} (last committed: {seen})")
    out += [f"inconsistent commit read (invariant 5): {x}" for x in stage.watcher.inconsistent]
    return out


def _first_completion(
    runs: Sequence[LedgerRun], partition_of: dict[str, int], inj: Injected, since: float
) -> float | None:
    """When a run started after `since` (the first generation committed after the fault, or
    the fault itself when the group kept its generation) first finished a task of an
    affected partition: the work the fault stopped, going again. Runs a cut-off or paused
    worker still finishes on its own before that generation do not count."""
    times = [
        r.done_at
        for r in runs
        if r.done_at is not None
        and r.run.started > since
        and partition_of.get(r.run.task_id, -1) in inj.affected
    ]
    return min(times, default=None)
