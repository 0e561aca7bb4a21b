"""Priority lanes without a broker: the lane encoding, the CLI's priority text, and the
FetchGate's decisions (memory and lag)."""

from __future__ import annotations

import pytest

from ringleader.worker.lanes import (
    FetchGate,
    LaneTopics,
    Level,
    busiest,
    lane,
    lanes_of,
    level_for,
    level_of,
    partition_of,
    partitions_of,
    priority_value,
)

NORMAL = [lane(Level.NORMAL, p) for p in range(2)]
HIGH = [lane(Level.HIGH, p) for p in range(2)]
LOW = [lane(Level.LOW, p) for p in range(2)]
ALL = NORMAL + HIGH + LOW


def test_the_default_levels_lanes_are_its_partition_numbers() -> None:
    assert NORMAL == [0, 1]
    for level in Level:
        for p in (0, 7, 99_999):
            ln = lane(level, p)
            assert (level_of(ln), partition_of(ln)) == (level, p)
    assert lanes_of([3]) == [3, lane(Level.HIGH, 3), lane(Level.LOW, 3)]
    assert partitions_of(ALL) == [0, 1]
    assert busiest({0: 3, lane(Level.HIGH, 0): 9, 1: 2}) == {0: 9, 1: 2}


def test_priority_picks_the_level_and_topic() -> None:
    assert [level_for(p) for p in (-5, -1, 0, 1, 9)] == [
        Level.LOW,
        Level.LOW,
        Level.NORMAL,
        Level.HIGH,
        Level.HIGH,
    ]
    t = LaneTopics("ns.tasks")
    assert t.all() == ("ns.tasks", "ns.tasks.high", "ns.tasks.low")
    assert t.of_lane(lane(Level.HIGH, 4)) == ("ns.tasks.high", 4)
    assert t.levels()["ns.tasks.low"] is Level.LOW


@pytest.mark.parametrize(
    ("text", "value"), [("high", 1), ("Normal", 0), (" low ", -1), ("7", 7), ("-2", -2)]
)
def test_priority_text(text: str, value: int) -> None:
    assert priority_value(text) == value


def test_priority_text_refused_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="high, normal, low; got 'urgent'"):
        priority_value("urgent")


def test_nothing_paused_below_the_limit_without_lag() -> None:
    assert FetchGate(10).paused(ALL, held=3, lagging=set()) == set()


def test_a_higher_levels_lag_pauses_every_level_below_it() -> None:
    gate = FetchGate(10)
    assert gate.paused(ALL, 0, {Level.HIGH}) == set(NORMAL + LOW)
    assert gate.paused(ALL, 0, {Level.NORMAL}) == set(LOW)
    assert gate.paused(ALL, 0, {Level.LOW}) == set()  # nothing below the lowest


def test_at_the_limit_only_the_high_level_keeps_fetching_until_twice_the_limit() -> None:
    gate = FetchGate(10)
    assert gate.paused(ALL, 10, set()) == set(NORMAL + LOW)
    assert gate.paused(ALL, 19, set()) == set(NORMAL + LOW)
    assert gate.paused(ALL, 20, set()) == set(ALL)  # the hard bound on memory
    assert gate.paused(ALL, 12, set()) == set(ALL)  # hysteresis: resumes below the limit
    assert gate.paused(ALL, 9, set()) == set(NORMAL + LOW)
    assert gate.paused(ALL, 6, set()) == set(NORMAL + LOW)  # resumes below half
    assert gate.paused(ALL, 4, set()) == set()


def test_a_namespace_without_priorities_pauses_as_before() -> None:
    """Only default lanes: pause at the limit, resume below half (what the worker did before
    there were levels)."""
    gate = FetchGate(100)
    seen = [bool(gate.paused(NORMAL, held, set())) for held in (99, 100, 60, 50, 49, 80)]
    assert seen == [False, True, True, True, False, False]


def test_a_bad_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        FetchGate(0)
