"""Helpers for driving `Membership` directly: settings, a manual clock, a joined follower."""

from __future__ import annotations

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.membership import Membership
from ringleader.coordinator.messages import (
    Assign,
    AssignmentRead,
    Command,
    CoordinatorFound,
    FindCoordinator,
    JoinResponse,
    ReadAssignment,
    SendJoin,
    SendSync,
    Start,
    State,
    SyncResponse,
)
from ringleader.coordinator.settings import MemberSettings

SETTINGS = MemberSettings(
    group_id="g",
    session_timeout_ms=6000,
    rebalance_timeout_ms=10000,
    heartbeat_interval_ms=1000,
    fence_margin_ms=2000,
    retry_backoff_ms=200,
    request_timeout_ms=5000,
)


def only(cmds: list[Command], kind: type) -> Command:
    assert len(cmds) == 1 and isinstance(cmds[0], kind), cmds
    return cmds[0]


def kinds(cmds: list[Command]) -> list[type]:
    return [type(c) for c in cmds]


class Clock:
    """MockClock spirit: time only moves when the test says so."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self, dt: float = 0.0) -> float:
        self.t += dt
        return self.t


def joined_follower(
    m: Membership, clock: Clock, partitions: tuple[int, ...] = (0, 2), gen: int = 1
) -> None:
    """Drive a fresh machine to STABLE as a follower holding `partitions`."""
    only(m.handle(Start(clock())), FindCoordinator)
    only(m.handle(CoordinatorFound(clock(0.01))), SendJoin)
    sent = clock()
    cmd = only(
        m.handle(JoinResponse(clock(0.05), sent, ErrorCode.NONE, gen, "m1", "m0", "roundrobin")),
        SendSync,
    )
    assert isinstance(cmd, SendSync) and cmd.assignments == {}
    sent = clock()
    read = only(m.handle(SyncResponse(clock(0.05), sent, ErrorCode.NONE, b"ptr")), ReadAssignment)
    assert read == ReadAssignment(gen, "m1", b"ptr")
    assign = only(m.handle(AssignmentRead(clock(0.01), gen, partitions)), Assign)
    assert assign == Assign(gen, partitions)
    assert m.state == State.STABLE


def join(
    m: Membership,
    clock: Clock,
    parts: tuple[int, ...],
    gen: int,
    protocol: str = "cooperative",
    *,
    leader: str = "m0",
    moving: bool = False,
) -> list[Command]:
    """From JOINING (a SendJoin just emitted) to the read of generation `gen`, as member m1;
    the commands the read gives."""
    sent = clock()
    jr = JoinResponse(clock(0.05), sent, ErrorCode.NONE, gen, "m1", leader, "roundrobin")
    only(m.handle(jr), SendSync)
    sent = clock()
    only(m.handle(SyncResponse(clock(0.05), sent, ErrorCode.NONE, b"ptr")), ReadAssignment)
    return list(m.handle(AssignmentRead(clock(0.01), gen, parts, protocol, moving)))
