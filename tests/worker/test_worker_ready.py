"""The ready queue: how many tasks the starter begins ahead of the handler threads."""

from __future__ import annotations

import threading

from ringleader.worker.book import Fetched
from ringleader.worker.envelope import Envelope
from ringleader.worker.ledger import Begin, Verdict
from ringleader.worker.ready import SHORT_RUN, Ready, ReadyQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def item(n: int) -> Ready:
    env = Envelope(id=f"t{n}", name="noop")
    return Ready(Fetched(env, partition=0, offset=n), Begin(Verdict.RUN, 1))


class Handler:
    """A handler thread that pops one task and stays busy with it until `end(seconds)`."""

    def __init__(self, q: ReadyQueue, now: float) -> None:
        self.got: Ready | None = None
        self._q = q
        self._seconds = 0.0
        self._popped = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(now,), daemon=True)
        self._thread.start()
        assert self._popped.wait(5)

    def _run(self, now: float) -> None:
        self.got = self._q.pop(now, 1.0)
        self._popped.set()
        self._release.wait(5)
        self._q.ended(self._seconds)

    def end(self, seconds: float) -> None:
        self._seconds = seconds
        self._release.set()
        self._thread.join(5)


def test_before_any_run_ended_one_task_is_begun_per_idle_handler() -> None:
    clock = Clock()
    q = ReadyQueue(4, clock, most=32)
    assert q.wanted(0) == 4
    q.put(item(1))
    assert q.wanted(0) == 3
    h = Handler(q, clock.now)
    assert h.got == item(1)
    assert q.wanted(0) == 3  # three idle handlers, nothing waiting, the busy one gets none
    h.end(5.0)


def test_long_runs_get_nothing_begun_behind_them() -> None:
    clock = Clock()
    q = ReadyQueue(2, clock, most=32)
    q.put(item(1))
    Handler(q, clock.now).end(2.0)  # runs take seconds
    q.put(item(2))
    h = Handler(q, clock.now)
    assert q.wanted(0) == 1  # only the idle handler
    h.end(2.0)


def test_short_runs_have_about_a_short_run_of_work_begun_for_each_handler() -> None:
    clock = Clock()
    q = ReadyQueue(2, clock, most=32)
    q.put(item(1))
    Handler(q, clock.now).end(SHORT_RUN / 4)  # four runs fit in SHORT_RUN
    assert q.wanted(0) == 8  # 2 handlers x 4
    q.put(item(2))
    h = Handler(q, clock.now)
    assert q.wanted(0) == 8  # the busy handler's run is young: it counts as soon free
    clock.now += SHORT_RUN * 2  # ... until its run is no longer short
    assert q.wanted(0) == 4
    h.end(SHORT_RUN / 4)


def test_what_is_begun_ahead_is_capped() -> None:
    clock = Clock()
    q = ReadyQueue(8, clock, most=10)
    q.put(item(1))
    Handler(q, clock.now).end(0.0)  # instant runs
    assert q.wanted(0) == 10
    for n in range(10):
        q.put(item(n))
    assert q.wanted(0) == 0


def test_closing_hands_back_what_no_handler_took_and_refuses_more() -> None:
    q = ReadyQueue(2, Clock(), most=8)
    q.put(item(1))
    q.put(item(2))
    assert q.close() == [item(1), item(2)]
    assert q.closed
    assert not q.put(item(3))
    assert q.pop(0.0, 0.1) is None
    assert q.wanted(0.1) == 0


def test_a_waiting_starter_wakes_when_a_handler_takes_a_task() -> None:
    q = ReadyQueue(1, Clock(), most=8)
    q.put(item(1))
    assert q.wanted(0) == 0  # the one handler has a task waiting
    waiter = threading.Thread(target=q.wanted, args=(60.0,))
    waiter.start()
    h = Handler(q, 1000.0)
    waiter.join(10)
    assert not waiter.is_alive(), "the pop did not wake the starter"
    h.end(5.0)
    assert q.wanted(0) == 1
