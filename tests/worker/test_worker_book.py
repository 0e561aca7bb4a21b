"""The partition book driven directly: no broker, no Redis, no threads, no clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ringleader.worker.book import Claim, Fetched, PartitionBook, RawRecord
from ringleader.worker.envelope import Envelope


def rec(p: int, off: int, *, batch: str | None = None, completed: bool = False) -> RawRecord:
    env = Envelope(id=f"t-{p}-{off}", name="job", batch=batch)
    return RawRecord(p, off, b"raw", env, completed=completed)


def bad(p: int, off: int) -> RawRecord:
    return RawRecord(p, off, b"\xff", None, "undecodable envelope: not msgpack")


def held(assign: dict[int, int | None], generation: int = 3) -> PartitionBook:
    book = PartitionBook()
    book.hold(generation, "m-1")
    book.assign(assign)
    return book


def run(book: PartitionBook, task: Fetched) -> None:
    """A handler claims the task and its completion is recorded."""
    assert book.claim(task, True) is Claim.CLAIMED
    book.recorded(task)


def test_assign_starts_from_committed_positions_and_keeps_what_is_held() -> None:
    book = PartitionBook()
    assert book.assign({0: 5, 1: None}) == {0: 5, 1: None}
    assert book.active() == [0, 1]
    # Assigned again while held: left alone (its tracker and epoch stay).
    assert book.assign({0: 9, 2: 0}) == {2: 0}
    assert book.positions()[0][:2] == (5, 5)


def test_ingest_sorts_tasks_dead_letters_completed_and_batches() -> None:
    book = held({0: 0, 1: 0})
    out = book.ingest(
        [rec(0, 0), bad(0, 1), rec(0, 2, completed=True), rec(1, 0, batch="b1"), rec(7, 0)]
    )
    assert [(t.partition, t.offset) for t in out.ready] == [(0, 0)]
    assert [(u.partition, u.offset, u.reason) for u in out.undecodable] == [
        (0, 1, "undecodable envelope: not msgpack")
    ]
    assert out.skipped == 1
    assert book.parked_count == 1 and book.parked_batches() == ["b1"]
    # The undecodable and completed offsets are done, but offset 0 still runs: nothing moves.
    assert book.due_commit().offsets == {}
    run(book, out.ready[0])
    assert book.due_commit().offsets == {0: 3}


def test_a_lapsed_lease_makes_a_task_wait_not_vanish() -> None:
    book = held({0: 0})
    task = book.ingest([rec(0, 0)]).ready[0]
    assert book.claim(task, False) is Claim.WAIT
    assert book.positions()[0][3] == 0  # not counted in flight while it waits
    # The heartbeat came back: the same task is claimed and its offset can complete.
    run(book, task)
    assert book.due_commit().offsets == {0: 1}


def test_a_record_fetched_twice_is_tracked_once() -> None:
    book = held({0: 0})
    assert len(book.ingest([rec(0, 0)]).ready) == 1
    assert book.ingest([rec(0, 0)]).ready == []


def test_commit_waits_for_the_oldest_unfinished_task() -> None:
    book = held({0: 10})
    t10, t11 = book.ingest([rec(0, 10), rec(0, 11)]).ready
    run(book, t11)
    assert book.due_commit().offsets == {}
    run(book, t10)
    commit = book.due_commit()
    assert (dict(commit.offsets), commit.generation, commit.member_id) == ({0: 12}, 3, "m-1")
    book.committed(commit, [0])
    assert book.due_commit().offsets == {}


def test_a_refused_commit_is_due_again() -> None:
    book = held({0: 0})
    run(book, book.ingest([rec(0, 0)]).ready[0])
    commit = book.due_commit()
    book.committed(commit, [])
    assert book.due_commit().offsets == {0: 1}


def test_revoke_stops_claims_and_drains_in_flight_tasks() -> None:
    book = held({0: 0, 1: 0})
    running, waiting = book.ingest([rec(0, 0), rec(0, 1)]).ready
    other = book.ingest([rec(1, 0)]).ready[0]
    assert book.claim(running, True) is Claim.CLAIMED
    rev = book.revoke([0])
    assert rev.partitions == [0] and book.active() == [1]
    assert book.claim(waiting, True) is Claim.STALE  # no new task of a revoked partition
    assert book.claim(other, True) is Claim.CLAIMED  # the partition that stays is untouched
    assert book.inflight(rev) == {0: 1} and not book.drained(rev)
    book.recorded(running)
    assert book.drained(rev)
    # The final commit of a revoked partition is fenced by the generation it had, and the
    # periodic commit no longer covers it.
    book.hold(4, "m-1")
    final = book.revoked_commit(rev)
    assert (dict(final.offsets), final.generation) == ({0: 1}, 3)
    assert 0 not in book.due_commit().offsets
    book.forget(rev)
    assert book.positions().keys() == {1}


def test_work_fetched_under_an_old_epoch_is_dropped_after_reassignment() -> None:
    book = held({0: 0})
    stale = book.ingest([rec(0, 0)]).ready[0]
    rev = book.revoke([0])
    book.forget(rev)
    book.assign({0: 0})
    assert book.claim(stale, True) is Claim.STALE
    book.recorded(stale)  # a late record of the old epoch changes nothing
    assert book.due_commit().offsets == {}
    fresh = book.ingest([rec(0, 0)]).ready[0]
    run(book, fresh)
    assert book.due_commit().offsets == {0: 1}


def test_forget_of_an_old_revocation_leaves_a_new_assignment_alone() -> None:
    book = held({0: 0})
    rev = book.revoke([0])
    book.assign({0: 4})  # assigned again before the revoke finished
    book.forget(rev)
    assert book.active() == [0]
    assert book.revoked_commit(rev).offsets == {}


def test_revoke_drops_parked_batch_tasks_of_its_partitions() -> None:
    book = held({0: 0, 1: 0})
    book.ingest([rec(0, 0, batch="b"), rec(1, 0, batch="b"), rec(1, 1, batch="c")])
    assert book.parked_count == 3
    book.revoke([1])
    assert book.parked_count == 1 and book.parked_batches() == ["b"]
    assert [t.partition for t in book.take_batch("b")] == [0]
    assert book.parked_count == 0 and book.take_batch("b") == []


def test_an_abandoned_batch_task_is_adopted_until_its_partition_is_handed_on() -> None:
    book = held({0: 0})
    task = book.ingest([rec(0, 0, batch="b")]).ready or book.take_batch("b")
    rev = book.revoke([0])
    assert book.adopt(task[0])  # dead-lettered while the revoke drains: counted in flight
    assert not book.drained(rev)
    book.recorded(task[0])
    assert book.drained(rev)
    book.forget(rev)
    assert not book.adopt(task[0])


@given(st.permutations(list(range(12))))
def test_commit_position_is_the_contiguous_done_prefix(order: list[int]) -> None:
    book = held({0: 0})
    tasks = book.ingest([rec(0, o) for o in range(12)]).ready
    done: set[int] = set()
    for o in order:
        run(book, tasks[o])
        done.add(o)
        prefix = 0
        while prefix in done:
            prefix += 1
        assert book.due_commit().offsets == ({0: prefix} if prefix else {})
