"""A suspect task runs alone: after the runs in progress, before any new one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ringleader.worker.isolation import Isolation


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def test_a_suspect_waits_for_running_tasks_and_holds_new_ones_back() -> None:
    iso = Isolation()
    order: list[str] = []
    iso.enter()
    iso.enter()  # shared runs go side by side

    def suspect() -> None:
        iso.enter_alone()
        order.append("suspect runs")
        iso.leave_alone()

    def late() -> None:
        iso.enter()
        order.append("late runs")
        iso.leave()

    s = threading.Thread(target=suspect)
    s.start()
    wait_until(lambda: iso._waiting == 1)
    lt = threading.Thread(target=late)
    lt.start()
    time.sleep(0.05)  # give both a chance to run too early; neither may
    assert order == []
    iso.leave()
    assert order == []  # one run is still in progress
    iso.leave()
    s.join(5)
    lt.join(5)
    assert order == ["suspect runs", "late runs"]
