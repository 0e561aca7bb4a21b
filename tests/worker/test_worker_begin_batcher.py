"""Begins from many handler threads are combined into few script calls (no Redis here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
import redis

from ringleader.worker.begin_batcher import BeginBatcher
from ringleader.worker.ledger import Begin, BeginRequest, Verdict


class SlowLedger:
    """`begin_many` that holds its first call until released, and records every call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.fail = fail

    def begin_many(self, requests: Sequence[BeginRequest], now: float) -> list[Begin]:
        self.calls.append([r.task_id for r in requests])
        self.entered.set()
        self.release.wait(5)
        if self.fail:
            raise redis.ConnectionError("down")
        return [Begin(Verdict.RUN, attempt=r.attempt) for r in requests]


def test_begins_waiting_behind_a_call_go_together_in_the_next() -> None:
    ledger = SlowLedger()
    batcher = BeginBatcher(ledger, lambda: 0.0)  # type: ignore[arg-type]
    answers: dict[str, Begin] = {}

    def begin(tid: str) -> None:
        answers[tid] = batcher.begin(BeginRequest(tid, "job", 1))

    first = threading.Thread(target=begin, args=("t0",))
    first.start()
    assert ledger.entered.wait(5)
    rest = [threading.Thread(target=begin, args=(f"t{i}",)) for i in range(1, 6)]
    for t in rest:
        t.start()
    # Every later begin is queued behind the call in flight before it is let go.
    deadline = time.monotonic() + 5
    while len(batcher._waiting) < 5:
        assert time.monotonic() < deadline, "the later begins never queued"
        time.sleep(0.005)
    ledger.release.set()
    for t in [first, *rest]:
        t.join(5)
    assert ledger.calls[0] == ["t0"]
    assert sorted(ledger.calls[1]) == [f"t{i}" for i in range(1, 6)] and len(ledger.calls) == 2
    assert all(a.verdict is Verdict.RUN for a in answers.values()) and len(answers) == 6


def test_a_failed_call_raises_in_every_thread_it_carried() -> None:
    ledger = SlowLedger(fail=True)
    ledger.release.set()
    batcher = BeginBatcher(ledger, lambda: 0.0)  # type: ignore[arg-type]
    with pytest.raises(redis.ConnectionError):
        batcher.begin(BeginRequest("t0", "job", 1))
