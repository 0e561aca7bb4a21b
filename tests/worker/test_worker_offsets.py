from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringleader.worker.offsets import OffsetTracker


def test_nothing_started_keeps_initial_position() -> None:
    assert OffsetTracker().committable() is None
    assert OffsetTracker(17).committable() == 17


def test_in_order_completion() -> None:
    t = OffsetTracker(0)
    for o in range(3):
        t.mark_started(o)
    assert t.committable() == 0
    t.mark_done(0)
    assert t.committable() == 1
    t.mark_done(1)
    t.mark_done(2)
    assert t.committable() == 3
    assert t.outstanding == 0 and t.in_flight == 0


def test_out_of_order_holds_at_the_oldest_unfinished() -> None:
    t = OffsetTracker(10)
    for o in (10, 11, 12, 13):
        t.mark_started(o)
    t.mark_done(12)
    t.mark_done(13)
    assert t.committable() == 10
    t.mark_done(11)
    assert t.committable() == 10
    assert t.pending() == [10]
    t.mark_done(10)
    assert t.committable() == 14


def test_gaps_between_offsets() -> None:
    t = OffsetTracker(5)
    for o in (5, 9, 20):  # 6-8 and 10-19 are transaction markers / compacted
        t.mark_started(o)
    t.mark_done(5)
    assert t.committable() == 6
    t.mark_done(20)
    assert t.committable() == 6
    t.mark_done(9)
    assert t.committable() == 21


def test_first_offset_above_position() -> None:
    t = OffsetTracker()
    t.mark_started(100)
    assert t.committable() is None
    t.mark_done(100)
    assert t.committable() == 101


@pytest.mark.parametrize(
    ("setup", "bad", "fragment"),
    [
        ([3], lambda t: t.mark_started(3), "must increase"),
        ([3], lambda t: t.mark_started(2), "must increase"),
        ([], lambda t: t.mark_started(-1), ">= 0"),
        ([], lambda t: t.mark_done(0), "not started"),
        ([0], lambda t: (t.mark_done(0), t.mark_done(0)), "already done"),
    ],
)
def test_misuse_is_an_error(setup: list[int], bad: object, fragment: str) -> None:
    t = OffsetTracker()
    for o in setup:
        t.mark_started(o)
    with pytest.raises(ValueError, match=fragment):
        bad(t)  # type: ignore[operator]


def test_below_committed_position_is_an_error() -> None:
    with pytest.raises(ValueError, match="below the committed position"):
        OffsetTracker(10).mark_started(9)


def test_memory_bounded_by_window_not_history() -> None:
    t = OffsetTracker(0)
    for o in range(100_000):
        t.mark_started(o)
        t.mark_done(o)
    assert t.outstanding == 0 and t.committable() == 100_000


@given(
    offsets=st.lists(st.integers(0, 10_000), unique=True, min_size=1, max_size=60).map(sorted),
    data=st.data(),
)
def test_committable_never_passes_an_incomplete_offset(
    offsets: list[int], data: st.DataObject
) -> None:
    t = OffsetTracker(offsets[0])
    started: list[int] = []
    done: set[int] = set()
    todo = list(offsets)
    while todo or len(done) < len(started):
        can_start = bool(todo)
        can_finish = [o for o in started if o not in done]
        if can_start and (not can_finish or data.draw(st.booleans())):
            o = todo.pop(0)
            t.mark_started(o)
            started.append(o)
        else:
            o = data.draw(st.sampled_from(can_finish))
            t.mark_done(o)
            done.add(o)
        c = t.committable()
        assert c is not None
        # Never past an incomplete started offset ...
        assert all(o >= c for o in started if o not in done)
        # ... and as far as it can go: one past the last started offset that precedes every
        # incomplete one (offsets in a gap are not started, so committing inside it is exact).
        incomplete = [o for o in started if o not in done]
        first_incomplete = min(incomplete) if incomplete else None
        passed = [o for o in started if first_incomplete is None or o < first_incomplete]
        expected = max(passed) + 1 if passed else offsets[0]
        assert c == expected
        assert t.outstanding == len([o for o in started if o >= c])
    assert t.committable() == offsets[-1] + 1
