"""The pure judge of a chaos scenario: each invariant breaks the row, by name."""

from __future__ import annotations

from typing import Any

from ringleader.chaos.report import Expect, Report, Run, count_overlaps, judge

T0 = 1000.0


def run(task: str, pid: int, start: float, last: float) -> Run:
    return Run(task, f"{pid}:1", T0 + start, T0 + last)


def judged(**kw: Any) -> Report:
    facts: dict[str, Any] = {
        "accepted": ["a", "b"],
        "completed": ["a", "b"],
        "runs": [run("a", 1, 0, 1), run("b", 2, 0, 1)],
        "completion_records": {"a": 1, "b": 1},
        "fault_at": T0 + 0.5,
        "generation_at": T0 + 7.0,
        "first_completion_at": T0 + 7.5,
        "expect": Expect(failover_bound=8.0),
    }
    facts.update(kw)
    return judge("worker-sigkill", **facts)


def test_a_clean_run_holds_every_invariant_and_gives_its_seconds() -> None:
    r = judged()
    assert r.ok and r.broken == ()
    assert (r.failover_s, r.generation_s) == (7.0, 6.5)
    assert set(r.to_json()) >= {
        "scenario", "tasks", "lost", "dup_exec", "dup_records", "overlaps", "failover_s", "ok",
    }  # fmt: skip


def test_a_task_never_completed_is_lost() -> None:
    r = judged(completed=["a"])
    assert not r.ok and r.lost == 1
    assert r.broken[0].startswith("lost: 1")


def test_two_completion_records_of_one_task_break_invariant_4() -> None:
    r = judged(completion_records={"a": 2, "b": 1})
    assert not r.ok and "invariant 4" in r.broken[0]


def test_a_rerun_after_a_kill_is_allowed_but_not_where_no_run_may_repeat() -> None:
    runs = [run("a", 1, 0, 0.4), run("a", 2, 7, 8), run("b", 2, 0, 1)]
    assert judged(runs=runs).ok
    strict = judged(runs=runs, expect=Expect(dup_exec_allowed=False))
    assert not strict.ok and strict.broken[0].startswith("dup_exec: 1")


def test_runs_of_one_task_that_worked_at_the_same_time_overlap() -> None:
    # A paused run resumed and went on working after the new run had started.
    runs = [run("a", 1, 0, 9), run("a", 2, 7, 8), run("b", 2, 0, 1)]
    r = judged(runs=runs)
    assert not r.ok and r.overlaps == 1
    # The same paused run stopped at its checkpoint: its last step came before the freeze.
    assert count_overlaps([run("a", 1, 0, 0.4), run("a", 2, 7, 8)]) == 0


def test_failover_over_its_bound_or_never_breaks_the_row() -> None:
    late = judged(first_completion_at=T0 + 9.0)
    assert not late.ok and "8.50s" in late.broken[0]
    never = judged(first_completion_at=None)
    assert not never.ok and "no completion" in never.broken[0]
