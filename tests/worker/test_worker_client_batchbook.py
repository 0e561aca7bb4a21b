"""BatchBook: the pure judge of 2PC batches (no broker, time passed in)."""

from __future__ import annotations

import pytest

from ringleader.coordinator.twophase import (
    Applied,
    Expired,
    Inconsistent,
    Skipped,
    TxAssembler,
)
from ringleader.worker.batches import BatchBook, BatchState, part_value
from tests.coordinator.txrecords import encode_tx


def applied(batch: str, *tasks: str) -> Applied:
    return Applied(batch, {t: part_value(t.encode()) for t in tasks}, commit_offset=10)


def test_committed_batch_and_membership() -> None:
    book = BatchBook(abandon_after=5)
    assert book.state("b1", now=0) is BatchState.PENDING
    book.feed(applied("b1", "t1", "t2"))
    assert book.state("b1", now=1) is BatchState.COMMITTED
    assert book.member("b1", "t1") and book.member("b1", "t2")
    assert not book.member("b1", "t3")
    assert not book.member("other", "t1")


def test_pending_until_a_read_begun_abandon_after_later_finds_no_commit() -> None:
    book = BatchBook(abandon_after=5)
    assert book.state("b", now=100) is BatchState.PENDING  # first seen at 100
    book.caught_up(104.9)
    assert book.state("b", now=200) is BatchState.PENDING  # reads lag: not judged on wall time
    book.caught_up(105)
    assert book.state("b", now=105) is BatchState.ABANDONED
    assert "no commit" in (book.reason("b") or "")


def test_abandonment_is_sticky_even_if_a_late_commit_arrives() -> None:
    book = BatchBook(abandon_after=1)
    book.state("b", now=0)
    book.caught_up(2)
    assert book.state("b", now=2) is BatchState.ABANDONED
    book.feed(applied("b", "t1"))
    assert book.state("b", now=3) is BatchState.ABANDONED
    assert not book.member("b", "t1")


def test_inconsistent_commit_abandons_at_once() -> None:
    book = BatchBook(abandon_after=100)
    book.feed(Inconsistent("b", "1 of 2 parts missing", 7))
    assert book.state("b", now=0) is BatchState.ABANDONED
    assert book.reason("b") == "1 of 2 parts missing"


def test_skipped_and_expired_outcomes_decide_nothing() -> None:
    book = BatchBook(abandon_after=100)
    book.feed(Skipped(3, "not ours"))
    book.feed(Expired("b", "too many", 2))
    assert book.state("b", now=0) is BatchState.PENDING


def test_first_decision_wins_over_a_rewritten_commit() -> None:
    book = BatchBook(abandon_after=100)
    book.feed(applied("b", "t1"))
    book.feed(Inconsistent("b", "rewritten", 20))
    assert book.state("b", now=0) is BatchState.COMMITTED


def test_assembler_outcomes_drive_the_book_parts_without_commit_stay_pending() -> None:
    asm = TxAssembler("batch")
    book = BatchBook(abandon_after=10)
    records = encode_tx("batch", "good", {"t1": b"x", "t2": b"y"})
    records += encode_tx("batch", "dead", {"t3": b"z"})[:-1]  # producer died before commit
    for off, (k, v) in enumerate(records):
        for o in asm.feed(k, v, off):
            book.feed(o)
    book.caught_up(0)
    assert book.state("good", now=0) is BatchState.COMMITTED
    assert book.state("dead", now=0) is BatchState.PENDING
    book.caught_up(10)
    assert book.state("dead", now=11) is BatchState.ABANDONED


def test_memory_is_bounded() -> None:
    book = BatchBook(abandon_after=10, keep=3)
    for i in range(10):
        book.feed(applied(f"b{i}", "t"))
        book.state(f"p{i}", now=0)
    assert book.state("b9", now=0) is BatchState.COMMITTED
    assert book.state("b0", now=0) is BatchState.PENDING  # forgotten, judged afresh


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="abandon_after"):
        BatchBook(abandon_after=0)
    with pytest.raises(ValueError, match="keep"):
        BatchBook(keep=0)
