"""The record window and the flusher, driven with handler threads and a store whose writes the
test holds back: at most `window` tasks run without their completion recorded, handlers do not
wait for their own record while there is room, and stopping releases every waiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from ringleader.worker.book import Fetched
from ringleader.worker.envelope import Envelope
from ringleader.worker.pool import Finished, Flusher, HandlerPool, RecordWindow
from ringleader.worker.queues import QueuedTask, SchedulingQueue
from ringleader.worker.results import CompletionWrite, RetryWrite, RunOf, Status


class HeldStore:
    """ResultStore.write's interface; each write waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.written: list[str] = []
        self.calls = 0

    def write(
        self,
        statuses: Sequence[tuple[str, Status]],
        writes: Sequence[CompletionWrite],
        ttl: float,
        *,
        retries: Sequence[RetryWrite] = (),
        run: RunOf | None = None,
    ) -> tuple[list[bool], list[bool], list[bool]]:
        self.gate.wait()
        self.calls += 1
        self.written += [w.task_id for w in writes]
        return [True] * len(statuses), [True] * len(writes), [True] * len(retries)


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def task(n: int) -> Fetched:
    return Fetched(Envelope(id=f"{n:032x}", name="t"), 0, n)


class Harness:
    """A queue, a handler pool whose tasks finish at once, a window and a flusher."""

    def __init__(self, window: int, concurrency: int) -> None:
        self.store = HeldStore()
        self.window = RecordWindow(window)
        self.recorded: list[int] = []
        self.ran: list[int] = []
        self.flusher = Flusher(
            self.store,  # type: ignore[arg-type]
            60.0,
            lambda items: self.recorded.extend(i.task.offset for i in items),
            self.window,
            started_after=None,
        )
        self.queue = SchedulingQueue()
        self.pool = HandlerPool(self.queue, concurrency, self.run)

    def run(self, t: QueuedTask) -> None:
        assert isinstance(t, Fetched)
        if not self.window.acquire():
            return
        self.ran.append(t.offset)
        write = CompletionWrite(t.envelope.id, packed=b"\xc0")
        self.flusher.submit(Finished(t, write, holds_slot=True))

    def start(self, tasks: int) -> None:
        self.flusher.start()
        self.pool.start()
        for n in range(tasks):
            self.queue.push(task(n), 0.0)

    def stop(self) -> None:
        self.store.gate.set()
        self.queue.close()
        self.flusher.close(5.0)
        self.pool.join(5.0)


def test_at_most_window_tasks_run_unrecorded() -> None:
    h = Harness(window=5, concurrency=2)
    try:
        h.start(tasks=50)
        # Recording is held back: the handlers run 5 tasks without waiting for their own
        # records (more than the 2 threads), then stop for lack of a slot.
        wait_until(lambda: len(h.ran) == 5)
        time.sleep(0.1)  # a sixth start would show here; nothing to wait for otherwise
        assert len(h.ran) == 5 and h.window.used == 5
        h.store.gate.set()
        wait_until(lambda: len(h.recorded) == 50)
        assert sorted(h.recorded) == list(range(50)) == sorted(h.ran)
        # Group commit: far fewer writes than tasks.
        assert h.store.calls < 50
        wait_until(lambda: h.window.used == 0)
    finally:
        h.stop()


def test_a_task_ending_without_a_record_gives_its_slot_back_at_once() -> None:
    w = RecordWindow(1)
    assert w.acquire()
    w.release()
    assert w.acquire()  # would block forever if the slot had not come back
    with pytest.raises(RuntimeError):
        w.release(2)


def test_closing_releases_handlers_waiting_for_a_slot() -> None:
    w = RecordWindow(1)
    assert w.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(w.acquire()))
    t.start()
    time.sleep(0.05)  # let it block; the assertion below holds either way
    w.close()
    t.join(5.0)
    assert got == [False]


def test_stopping_with_the_store_down_leaves_no_handler_stuck() -> None:
    h = Harness(window=3, concurrency=3)
    h.start(tasks=10)
    wait_until(lambda: h.window.used == 3)
    h.queue.close()
    h.flusher.close(0.2)  # the held write never returns in time: close gives up on it
    h.pool.join(5.0)
    assert not any(t.is_alive() for t in h.pool._threads)
    h.store.gate.set()


@pytest.mark.parametrize("size", [0, -1, True, 2.5])
def test_window_size_must_be_a_positive_integer(size: object) -> None:
    with pytest.raises(ValueError, match="window size"):
        RecordWindow(size)  # type: ignore[arg-type]


def test_back_to_back_releases_wake_every_waiter() -> None:
    window = RecordWindow(2)
    assert window.acquire() and window.acquire()
    got: list[int] = []
    waiters = [
        threading.Thread(target=lambda i=i: got.append(i) if window.acquire() else None)
        for i in range(2)
    ]
    for t in waiters:
        t.start()
    wait_until(lambda: len(window._cond._waiters) == 2)  # type: ignore[attr-defined]
    window.release()
    window.release()  # before the first woken waiter can run
    for t in waiters:
        t.join(5)
    window.close()  # frees a waiter left asleep, so a failure does not hang the run
    assert sorted(got) == [0, 1] and window.used == 2
