"""Judging one chaos scenario: from what happened to the report row and the invariants it broke.

Pure: the runner collects the facts (the accepted task ids, each run of the ledger app with
its start and its last step, the completion records, the times of the fault, the next committed
generation and the first completion after it) and `judge` says what held. Times are wall-clock
seconds as the ledger app recorded them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Expect", "Report", "Run", "count_overlaps", "judge", "overlapping"]


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a task: when it started and when it last did work (its last step, or
    its end). A run stopped by a fault ends at its last recorded step."""

    task_id: str
    run_id: str  # worker process and attempt: "<pid>:<attempt>"
    started: float
    last_active: float


@dataclass(frozen=True, slots=True)
class Expect:
    """What a scenario allows: repeated executions (a killed or cut-off worker's in-flight
    tasks), and within how many seconds of the fault work must resume (None: no bound)."""

    dup_exec_allowed: bool = True
    failover_bound: float | None = None


@dataclass(frozen=True, slots=True)
class Report:
    scenario: str
    tasks: int
    lost: int
    dup_exec: int
    dup_records: int
    overlaps: int
    failover_s: float | None
    generation_s: float | None
    ok: bool
    broken: tuple[str, ...] = ()
    refused: int = 0  # submissions the broker did not acknowledge (not accepted, not owed)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["broken"] = list(self.broken)
        return out


def count_overlaps(runs: Iterable[Run]) -> int:
    """Pairs of runs of one task that did work at the same time: the later run started before
    the earlier one's last step."""
    return len(overlapping(runs))


def overlapping(runs: Iterable[Run]) -> list[tuple[Run, Run]]:
    """The pairs `count_overlaps` counts, earlier run first."""
    by_task: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_task[r.task_id].append(r)
    pairs: list[tuple[Run, Run]] = []
    for task_runs in by_task.values():
        ordered = sorted(task_runs, key=lambda r: r.started)
        for i, a in enumerate(ordered):
            pairs += [(a, b) for b in ordered[i + 1 :] if b.started < a.last_active]
    return pairs


def _some(ids: Iterable[str], n: int = 3) -> str:
    """A few of the ids a broken invariant is about, so a failed run says where to look."""
    shown = sorted(ids)
    more = f" and {len(shown) - n} more" if len(shown) > n else ""
    return ", ".join(shown[:n]) + more


def judge(
    scenario: str,
    *,
    accepted: Sequence[str],
    completed: Iterable[str],
    runs: Sequence[Run],
    completion_records: Mapping[str, int],
    fault_at: float,
    generation_at: float | None,
    first_completion_at: float | None,
    expect: Expect,
    extra: Sequence[str] = (),
) -> Report:
    """The report row of a scenario and the invariants it broke, by name.

    `completion_records`: task id -> completion records seen for it (events of the workers'
    event topic: more than one means Invariant 4 broke). `extra`: what the scenario's own
    checks found broken, already phrased."""
    done = set(completed)
    lost_ids = [t for t in accepted if t not in done]
    lost = len(lost_ids)
    starts = Counter(r.task_id for r in runs)
    repeated = [t for t, n in starts.items() if n > 1]
    dup_exec = len(repeated)
    twice = [t for t, n in completion_records.items() if n > 1]
    dup_records = len(twice)
    pairs = overlapping(runs)
    overlaps = len(pairs)
    failover = None if first_completion_at is None else round(first_completion_at - fault_at, 2)
    generation = None if generation_at is None else round(generation_at - fault_at, 2)
    broken: list[str] = []
    if lost:
        broken.append(
            f"lost: {lost} accepted tasks never completed (invariant 3): {_some(lost_ids)}"
        )
    if dup_records:
        broken.append(
            f"dup_records: {dup_records} tasks completed more than once (invariant 4): "
            f"{_some(twice)}"
        )
    if overlaps:
        shown = "; ".join(
            f"{a.task_id} run {a.run_id} until {a.last_active:.3f}, "
            f"run {b.run_id} from {b.started:.3f}"
            for a, b in pairs[:3]
        )
        broken.append(
            f"overlaps: {overlaps} pairs of runs of one task worked side by side: {shown}"
        )
    if dup_exec and not expect.dup_exec_allowed:
        broken.append(
            f"dup_exec: {dup_exec} tasks ran twice where no run may repeat (invariant 6): "
            f"{_some(repeated)}"
        )
    if expect.failover_bound is not None and (failover is None or failover > expect.failover_bound):
        seen = "no completion" if failover is None else f"{failover:.2f}s"
        broken.append(f"failover_s: {seen}, over the bound of {expect.failover_bound:.1f}s")
    broken += extra
    return Report(
        scenario, len(accepted), lost, dup_exec, dup_records, overlaps, failover, generation,
        not broken, tuple(broken),
    )  # fmt: skip
