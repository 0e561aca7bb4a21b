from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringleader.worker.envelope import Envelope
from ringleader.worker.queues import QueueCounts, QueuedTask, SchedulingQueue


def task(
    n: int, priority: int = 0, partition: int = 0, not_before: float | None = None
) -> QueuedTask:
    env = Envelope(id=f"{n:032x}", name="t", priority=priority, not_before=not_before)
    return QueuedTask(env, partition, n)


def ids(q: SchedulingQueue, now: float) -> list[int]:
    out = []
    while (t := q.pop(now)) is not None:
        out.append(t.offset)
    return out


def test_priority_then_fifo() -> None:
    q = SchedulingQueue()
    for n, prio in [(1, 0), (2, 5), (3, 0), (4, 5), (5, -1), (6, 9)]:
        q.push(task(n, prio), now=0)
    assert ids(q, 0) == [6, 2, 4, 1, 3, 5]


@given(st.lists(st.integers(-3, 3), max_size=40))
def test_order_property(prios: list[int]) -> None:
    q = SchedulingQueue()
    for n, p in enumerate(prios):
        q.push(task(n, p), now=0)
    got = ids(q, 0)
    assert got == sorted(range(len(prios)), key=lambda n: (-prios[n], n))


def test_backoff_ready_at_time() -> None:
    q = SchedulingQueue()
    q.push_backoff(task(1), ready_at=10.0)
    q.push(task(2), now=0)
    assert q.pop(5.0) is not None and q.pop(5.0) is None
    assert q.counts() == QueueCounts(0, 1, 0)
    t = q.pop(10.0)
    assert t is not None and t.offset == 1


def test_not_before_goes_to_backoff() -> None:
    q = SchedulingQueue()
    q.push(task(1, not_before=100.0), now=50.0)
    assert q.pop(99.9) is None
    assert q.pop(100.0) is not None


def test_ready_backoff_competes_by_priority() -> None:
    q = SchedulingQueue()
    q.push_backoff(task(1, priority=9), ready_at=1.0)
    q.push(task(2, priority=0), now=0)
    assert ids(q, 1.0) == [1, 2]


def test_unschedulable_moves_back_on_recovery() -> None:
    q = SchedulingQueue()
    q.push_unschedulable(task(1), "billing", retry_at=1000.0, now=0)
    q.push_unschedulable(task(2), "billing", retry_at=1000.0, now=0)
    q.push_unschedulable(task(3), "mail", retry_at=1000.0, now=0)
    assert q.pop(1.0) is None
    assert q.move_service_back("billing") == 2
    assert q.move_service_back("billing") == 0
    assert ids(q, 1.0) == [1, 2]
    assert q.counts() == QueueCounts(0, 0, 1)


def test_unschedulable_flushed_at_retry_at_or_max_age() -> None:
    q = SchedulingQueue(unschedulable_max_age=30.0)
    q.push_unschedulable(task(1), "a", retry_at=5.0, now=0)
    q.push_unschedulable(task(2), "b", retry_at=None, now=0)
    q.push_unschedulable(task(3), "c", retry_at=500.0, now=0)
    assert ids(q, 4.9) == []
    assert ids(q, 5.0) == [1]
    assert ids(q, 30.0) == [2, 3]  # periodic flush caps the wait
    assert len(q) == 0
    assert q.move_service_back("a") == 0  # already flushed: no stale bookkeeping


def test_drain_partition_from_every_queue() -> None:
    q = SchedulingQueue()
    q.push(task(1, partition=0), now=0)
    q.push(task(2, partition=1), now=0)
    q.push_backoff(task(3, partition=1), ready_at=10)
    q.push_backoff(task(4, partition=0), ready_at=10)
    q.push_unschedulable(task(5, partition=1), "s", retry_at=10, now=0)
    q.push_unschedulable(task(6, partition=0), "s", retry_at=10, now=0)
    dropped = q.drain_partition(1)
    assert sorted(t.offset for t in dropped) == [2, 3, 5]
    assert ids(q, 100) == [1, 4, 6]
    assert q.drain_partition(1) == []
    assert q.move_service_back("s") == 0


def test_pop_wakes_on_push_from_another_thread() -> None:
    q = SchedulingQueue()
    got: list[QueuedTask | None] = []
    t = threading.Thread(target=lambda: got.append(q.pop(0.0, timeout=10.0)))
    t.start()
    time.sleep(0.05)  # let it block; correctness does not depend on this
    start = time.monotonic()
    q.push(task(7), now=0)
    t.join(5)
    assert not t.is_alive() and got and got[0] is not None and got[0].offset == 7
    assert time.monotonic() - start < 1.0


def test_pop_wait_bounded_by_next_due_time() -> None:
    q = SchedulingQueue()
    q.push_backoff(task(1), ready_at=100.05)
    start = time.monotonic()
    assert q.pop(100.0, timeout=10.0) is None  # waited ~0.05s, not 10s
    assert time.monotonic() - start < 2.0
    assert q.pop(100.05) is not None


def test_pop_without_timeout_does_not_block() -> None:
    q = SchedulingQueue()
    start = time.monotonic()
    assert q.pop(0.0) is None and q.pop(0.0, timeout=0) is None
    assert time.monotonic() - start < 0.5


def test_close_wakes_waiters() -> None:
    q = SchedulingQueue()
    results: list[QueuedTask | None] = []
    threads = [threading.Thread(target=lambda: results.append(q.pop(0, 30))) for _ in range(4)]
    for t in threads:
        t.start()
    q.close()
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert results == [None] * 4
    q.push(task(1), now=0)
    assert q.pop(0) is None and q.closed


def test_pool_of_threads_each_task_once() -> None:
    q = SchedulingQueue()
    n = 2000
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            t = q.pop(0.0, timeout=0.2)
            if t is None:
                if q.closed:
                    return
                continue
            with lock:
                seen.append(t.offset)
                if len(seen) == n:
                    q.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(n):
        q.push(task(i, priority=i % 3), now=0)
    for t in threads:
        t.join(20)
        assert not t.is_alive()
    assert sorted(seen) == list(range(n))


def test_rejects_bad_max_age() -> None:
    with pytest.raises(ValueError, match="unschedulable_max_age"):
        SchedulingQueue(unschedulable_max_age=0)
