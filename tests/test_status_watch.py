"""`status --watch` without a broker: the fleet totals, the rate from committed offsets, the
per-member lag, and the refresh loop on a pipe (plain text, JSON lines) with time injected.
The live terminal view is driven in tmux by tests/worker/test_status_watch_tmux.py."""

from __future__ import annotations

import io
import json

from rich.console import Console

from ringleader.errors import BrokerUnavailableError
from ringleader.groupview import MemberView
from ringleader.status import PartitionLag, StatusReport, fleet_of
from ringleader.status_watch import Rate, member_lag, render, watch


def report(committed: int) -> StatusReport:
    r = StatusReport("ns", "ns.workers", group_state="Stable", generation=4, leader="m-1")
    r.members = [
        MemberView("m-1", "w1", "/127.0.0.1", [0, 1], running=3),
        MemberView("m-2", "w2", "/127.0.0.1", [2], running=1),
    ]
    r.lag = [
        PartitionLag(0, committed + 5, committed, 5),
        PartitionLag(1, 7, 7, 0),
        PartitionLag(2, 9, 6, 3),
        PartitionLag(2, 2, None, 2, "high"),  # never committed: counts nothing committed
    ]
    r.total_lag, r.dead_letters = 10, 4
    r.breakers = [
        {"service": "db", "instance": "", "state": "open", "failures": 5, "opened_at": 1.0},
        {"service": "api", "instance": "a1", "state": "closed", "failures": 0, "opened_at": None},
    ]
    r.fleet = fleet_of(r)
    return r


def test_fleet_totals_add_up_the_members_lanes_and_breakers() -> None:
    f = fleet_of(report(100))
    assert (f.members, f.partitions, f.in_flight) == (2, 3, 4)
    assert (f.lag, f.dead_letters, f.breakers_open, f.instances) == (10, 4, 1, 0)
    assert f.committed == 100 + 7 + 6
    assert json.loads(json.dumps(report(100).to_json()))["fleet"]["committed"] == 113
    # Redis not read: in flight is unknown, not 0.
    unknown = StatusReport("ns", "g", members=[MemberView("m", "w", "", [0])])
    assert fleet_of(unknown).in_flight is None


def test_rate_is_committed_offsets_over_time_and_never_negative() -> None:
    rate = Rate()
    assert rate.update(10.0, 100) is None  # one report: no rate yet
    assert rate.update(12.0, 300) == 100.0
    assert rate.update(13.0, 250) == 0.0  # offsets went back (a recreated namespace)
    assert rate.update(13.0, 260) == 0.0  # no time passed: the last rate stays


def test_member_lag_sums_its_partitions_on_every_level() -> None:
    assert member_lag(report(100)) == {"m-1": 5, "m-2": 5}


def test_the_live_view_names_members_totals_and_open_breakers() -> None:
    console = Console(file=io.StringIO(), width=140, force_terminal=False)
    console.print(render(report(100), 123.4))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "generation 4" in text and "leader w1" in text
    assert "w1" in text and "0,1" in text and "w2" in text
    assert "tasks/s 123.4" in text and "dead letters 4" in text and "lag 10" in text
    assert "db" in text and "open" in text and "api/a1" in text


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_on_a_pipe_each_refresh_is_plain_text_with_the_rate() -> None:
    clock, out = Clock(), io.StringIO()
    reports = iter([report(100), report(300)])

    def gather() -> StatusReport:
        clock.now += 0.5  # gathering takes time: the next refresh waits only the rest
        return next(reports)

    assert watch(gather, out=out, interval=2.0, count=2, clock=clock, sleep=clock.sleep) == 0
    blocks = out.getvalue().strip().split("\n\n")
    assert len(blocks) == 2 and "\x1b[" not in out.getvalue()  # no control codes on a pipe
    assert blocks[0].startswith("namespace ns   group ns.workers")
    assert blocks[0].endswith("tasks/s -") and blocks[1].endswith("tasks/s 100.0")
    assert clock.slept == [1.5]  # interval minus the gather; none after the last


def test_json_lines_and_an_unreachable_broker_keep_watching() -> None:
    clock, out = Clock(), io.StringIO()
    calls = iter([BrokerUnavailableError("cannot reach the broker"), report(5)])

    def gather() -> StatusReport:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    watch(gather, out=out, count=2, as_json=True, clock=clock, sleep=clock.sleep)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first == {"error": "cannot reach the broker"}
    assert second["generation"] == 4 and second["fleet"]["members"] == 2
