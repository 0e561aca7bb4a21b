"""Member's thread and close, driven by a scripted executor (no broker, time passed in).

The executor seam answers each request command with the event a broker would have caused,
so the real `Member` loop, its local commands and the worker callbacks run deterministically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.groupapi import CoordinatorAddress
from ringleader.coordinator.member import Member
from ringleader.coordinator.messages import (
    AssignmentRead,
    Command,
    CoordinatorFound,
    Event,
    FindCoordinator,
    HeartbeatResponse,
    JoinResponse,
    LeaveResponse,
    ReadAssignment,
    RequestCommand,
    Revoke,
    SendHeartbeat,
    SendJoin,
    SendLeave,
    SendSync,
    State,
    SyncResponse,
)
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.settings import MemberSettings

SETTINGS = MemberSettings(group_id="g", heartbeat_interval_ms=100)
PARTITIONS = (0, 1)
OFFSETS = {0: 12, 1: 7}  # what the fake worker has completed when it is revoked


class StepClock:
    """Time moves a little on every read, never on its own."""

    def __init__(self) -> None:
        self.t = 100.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.t += 0.01
            return self.t


class ScriptedGroup:
    """A follower's broker and assignment log: join as m1 (leader m0), generation 1 holds
    PARTITIONS, and every heartbeat answers `heartbeat_error`. Logs each request."""

    def __init__(self, clock: StepClock, log: list[str], heartbeat_error: ErrorCode) -> None:
        self._now = clock
        self._log = log
        self._heartbeat_error = heartbeat_error
        self.coordinator: CoordinatorAddress | None = None

    def run(self, cmd: RequestCommand) -> Event:
        self._log.append(type(cmd).__name__)
        now = self._now()
        if isinstance(cmd, FindCoordinator):
            self.coordinator = CoordinatorAddress(1, "broker", 9092)
            return CoordinatorFound(now)
        if isinstance(cmd, SendJoin):
            return JoinResponse(now, now, ErrorCode.NONE, 1, "m1", "m0", "roundrobin")
        if isinstance(cmd, SendSync):
            return SyncResponse(now, now, ErrorCode.NONE, b"pointer")
        if isinstance(cmd, ReadAssignment):
            return AssignmentRead(now, cmd.generation, PARTITIONS)
        if isinstance(cmd, SendHeartbeat):
            return HeartbeatResponse(now, now, self._heartbeat_error)
        if isinstance(cmd, SendLeave):
            return LeaveResponse(now, ErrorCode.NONE)
        raise AssertionError(f"a follower is never asked to {cmd!r}")

    def applied(self, generation: int, partitions: tuple[int, ...]) -> None:
        self._log.append(f"metadata holds {generation} {list(partitions)}")

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class CloseRightAfterRevoke(Member):
    """Delivers close() at the moment of the race: the machine has just emitted a Revoke
    that has not run yet (a SIGTERM landing between a rebalance and its revoke)."""

    def _handle(self, event: Event) -> list[Command]:
        cmds = super()._handle(event)
        if not self._closing and any(isinstance(c, Revoke) for c in cmds):
            self.close()
        return cmds


def wait_until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def start_member(cls: type[Member], heartbeat_error: ErrorCode) -> tuple[Member, list[str]]:
    log: list[str] = []
    clock = StepClock()

    def on_revoked(partitions: list[int]) -> None:
        # What the worker's rebalance handler does: drain, then commit what completed.
        log.append(f"drain {partitions}")
        committed = {p: OFFSETS[p] for p in partitions}
        log.append(f"commit {committed}")

    member = cls(
        "unused:9092",
        SETTINGS,
        topic="t",
        partitions=len(PARTITIONS),
        assignment_topic="a",
        metadata=MemberMetadata(worker_id="w1"),
        on_assigned=lambda gen, parts: log.append(f"assigned {gen} {parts}"),
        on_revoked=on_revoked,
        clock=clock,
        executor=ScriptedGroup(clock, log, heartbeat_error),
    )
    member.start()
    return member, log


def test_close_right_after_a_rebalance_began_still_drains_and_commits_before_leaving() -> None:
    member, log = start_member(CloseRightAfterRevoke, ErrorCode.REBALANCE_IN_PROGRESS)
    # The member closes itself (from within the race window); only wait for it to end.
    wait_until(lambda: member.state is State.CLOSED, 10)
    assert log == [
        "FindCoordinator",
        "SendJoin",
        "SendSync",
        "ReadAssignment",
        "metadata holds 1 [0, 1]",
        "assigned 1 [0, 1]",
        "SendHeartbeat",  # answered REBALANCE_IN_PROGRESS: Revoke, then a rejoin, emitted
        "drain [0, 1]",  # close came before the Revoke ran; it still runs, once
        "commit {0: 12, 1: 7}",
        "SendLeave",  # the abandoned rejoin never went out
    ]
    assert member.assigned == () and member.generation == -1
    assert not member.owns(0)


def test_close_while_holding_revokes_then_leaves() -> None:
    member, log = start_member(Member, ErrorCode.NONE)
    assert member.wait_assigned(10)
    member.close(timeout=10)
    assert member.state is State.CLOSED
    tail = log[log.index("assigned 1 [0, 1]") + 1 :]
    assert [e for e in tail if e != "SendHeartbeat"] == [
        "drain [0, 1]",
        "commit {0: 12, 1: 7}",
        "SendLeave",
    ]
