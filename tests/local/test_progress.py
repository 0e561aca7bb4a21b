"""The start-up reporter: throttled waiting lines (time passed in), flushed stream lines, and
silence for library callers."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from ringleader.local import procs, progress


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ticker_says_one_line_every_few_seconds_however_often_it_is_polled() -> None:
    clock, lines = FakeClock(), list[str]()
    ticker = progress.Ticker(lines.append, "Kafka to answer on X", every=3.0, clock=clock)
    for i in range(1, 101):  # ten seconds of polls every 0.1 s
        clock.now = 100.0 + i / 10
        ticker.tick()
    assert lines == [
        "waiting for Kafka to answer on X",
        "waiting for Kafka to answer on X ... (3.0s)",
        "waiting for Kafka to answer on X ... (6.0s)",
        "waiting for Kafka to answer on X ... (9.0s)",
    ]
    assert ticker.elapsed == pytest.approx(10.0)


def test_ticker_after_a_slow_poll_says_one_line_not_a_burst() -> None:
    clock, lines = FakeClock(), list[str]()
    ticker = progress.Ticker(lines.append, "it", first="phase: waiting for it", clock=clock)
    clock.now += 10.0  # one poll that took ten seconds
    ticker.tick()
    clock.now += 2.9  # the next mark counts from the line just said
    ticker.tick()
    clock.now += 0.1
    ticker.tick()
    assert lines == [
        "phase: waiting for it",
        "waiting for it ... (10.0s)",
        "waiting for it ... (13.0s)",
    ]


def test_to_stream_writes_prefixed_flushed_lines_with_a_prefix_per_line() -> None:
    class Recorder(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    out, clock = Recorder(), FakeClock(0.0)
    say = progress.to_stream(lambda: f"[{clock():.1f}] ", out)
    say("one")
    clock.now = 2.5
    say("two")
    assert out.getvalue() == "[0.0] one\n[2.5] two\n"
    assert out.flushes >= 2
    fixed = io.StringIO()
    progress.to_stream("local: ", fixed)("up")
    assert fixed.getvalue() == "local: up\n"


def test_wait_ready_is_silent_by_default_and_reports_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "svc.log"
    me = os.getpid()  # alive for sure; the condition holds at once
    procs.wait_ready("svc", me, log, lambda: True, 5)
    assert capsys.readouterr() == ("", "")
    heard: list[str] = []
    procs.wait_ready("svc", me, log, lambda: True, 5, say=heard.append, what="svc on :1")
    assert heard == ["waiting for svc on :1"]
