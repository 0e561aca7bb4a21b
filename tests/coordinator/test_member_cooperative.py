"""Member's thread under the cooperative protocol, driven by a scripted executor (no broker).

A move is released on a thread of its own: heartbeats go on while the worker drains it, the
member keeps reporting it as owned until the drain returns, and then rejoins. A graceful
close drains while heartbeating, then leaves; a revoke of everything waits for a move in
progress first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.groupapi import CoordinatorAddress
from ringleader.coordinator.member import Member
from ringleader.coordinator.messages import (
    AssignmentRead,
    CoordinatorFound,
    Event,
    FindCoordinator,
    HeartbeatResponse,
    JoinResponse,
    LeaveResponse,
    ReadAssignment,
    RequestCommand,
    SendHeartbeat,
    SendJoin,
    SendLeave,
    SendSync,
    SyncResponse,
)
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.settings import MemberSettings
from tests.coordinator.test_member_close import StepClock, wait_until

SETTINGS = MemberSettings(group_id="g", heartbeat_interval_ms=100)


class CoopGroup:
    """A follower's broker: generation g gives `plan[g]` (cooperative); the first heartbeat
    after generation 1 answers REBALANCE_IN_PROGRESS. Records joins' owned partitions."""

    def __init__(self, clock: StepClock, plan: dict[int, tuple[int, ...]]) -> None:
        self._now = clock
        self._plan = plan
        self.generation = 0
        self.joins: list[tuple[int, ...]] = []
        self.heartbeats = 0
        self.left = threading.Event()
        self.coordinator: CoordinatorAddress | None = None
        self.aborted = False
        self._lock = threading.Lock()

    def run(self, cmd: RequestCommand) -> Event:
        now = self._now()
        if isinstance(cmd, FindCoordinator):
            self.coordinator = CoordinatorAddress(1, "broker", 9092)
            return CoordinatorFound(now)
        if isinstance(cmd, SendJoin):
            with self._lock:
                self.joins.append(cmd.owned)
                self.generation = min(self.generation + 1, max(self._plan))
            return JoinResponse(now, now, ErrorCode.NONE, self.generation, "m1", "m0", "rr")
        if isinstance(cmd, SendSync):
            return SyncResponse(now, now, ErrorCode.NONE, b"pointer")
        if isinstance(cmd, ReadAssignment):
            return AssignmentRead(now, cmd.generation, self._plan[cmd.generation], "cooperative")
        if isinstance(cmd, SendHeartbeat):
            with self._lock:
                self.heartbeats += 1
                first = self.heartbeats == 1
            error = ErrorCode.REBALANCE_IN_PROGRESS if first else ErrorCode.NONE
            return HeartbeatResponse(now, now, error)
        if isinstance(cmd, SendLeave):
            self.left.set()
            return LeaveResponse(now, ErrorCode.NONE)
        raise AssertionError(f"a follower is never asked to {cmd!r}")

    def applied(self, generation: int, partitions: tuple[int, ...]) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        pass


def start(
    plan: dict[int, tuple[int, ...]], on_revoked: Callable[[list[int]], None]
) -> tuple[Member, CoopGroup, list[tuple[int, list[int]]]]:
    clock = StepClock()
    group = CoopGroup(clock, plan)
    assigned: list[tuple[int, list[int]]] = []
    member = Member(
        "unused:9092",
        SETTINGS,
        topic="t",
        partitions=4,
        assignment_topic="a",
        metadata=MemberMetadata(worker_id="w1"),
        on_assigned=lambda gen, parts: assigned.append((gen, parts)),
        on_revoked=on_revoked,
        clock=clock,
        executor=group,
    )
    member.start()
    return member, group, assigned


def test_a_move_drains_on_its_own_thread_while_heartbeats_go_on() -> None:
    draining = threading.Event()
    finish = threading.Event()
    threads: list[str] = []

    def on_revoked(parts: list[int]) -> None:
        threads.append(threading.current_thread().name)
        if parts == [1]:
            draining.set()
            assert finish.wait(10)

    member, group, assigned = start({1: (0, 1), 2: (0,), 3: (0,)}, on_revoked)
    try:
        assert draining.wait(10), "partition 1 was never released"
        assert member.assigned == (0,)  # no new task of 1 starts, 0 keeps running
        beats = group.heartbeats
        wait_until(lambda: group.heartbeats >= beats + 3, 10)  # a member while it drains
        assert group.joins == [(), (0, 1)], "no rejoin before the release returned"
        finish.set()
        wait_until(lambda: len(group.joins) == 3, 10)
        assert group.joins[2] == (0,)  # the follow-up join no longer claims 1
        wait_until(lambda: [g for g, _ in assigned] == [1, 2, 3], 10)
        assert threads == ["ringleader-release"]
        assert member.generation == 3 and member.assigned == (0,)
    finally:
        finish.set()
        member.close(10)


def test_graceful_close_drains_while_a_member_then_leaves() -> None:
    released = threading.Event()
    finish = threading.Event()

    def on_revoked(parts: list[int]) -> None:
        if parts:
            released.set()
            assert finish.wait(10)

    member, group, _ = start({1: (0, 1)}, on_revoked)
    wait_until(lambda: member.generation == 1 and group.heartbeats >= 2, 10)
    closer = threading.Thread(target=member.close, args=(30,))
    closer.start()
    try:
        assert released.wait(10)
        beats = group.heartbeats
        wait_until(lambda: group.heartbeats >= beats + 3, 10)
        assert not group.left.is_set() and not group.aborted
        finish.set()
        assert group.left.wait(10), "no LeaveGroup once drained"
    finally:
        finish.set()
        closer.join(30)
    assert not closer.is_alive()
