"""The membership machine under the cooperative protocol, driven directly (no broker, no clock).

What it must hold: a rebalance leaves a member what it owns (no revoke before rejoining); a
partition the new generation takes away is released in the background (`Revoke(wait=False)`)
while heartbeats go on, and once `Released` the member rejoins so the leader can hand it on;
anything that means the broker dropped us (unknown member, illegal generation, a lapsed
session) revokes everything first, moves included; a graceful close drains while heartbeating
and leaves once released; an eager generation (or an eager member) behaves as before.
"""

from __future__ import annotations

from dataclasses import replace

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.membership import FOLLOWUP_SETTLE, Membership
from ringleader.coordinator.messages import (
    Assign,
    AssignmentCommitted,
    AssignmentRead,
    CoordinatorFound,
    Fenced,
    HeartbeatResponse,
    JoinResponse,
    Leave,
    ReadAssignment,
    Released,
    Revoke,
    RunAssignment,
    SendHeartbeat,
    SendJoin,
    SendLeave,
    SendSync,
    Start,
    State,
    SyncResponse,
    Tick,
)
from tests.coordinator.membership_kit import SETTINGS, Clock, join, kinds, only

COOP = "cooperative"


def stable(
    parts: tuple[int, ...] = (0, 1, 2), settings: object = SETTINGS
) -> tuple[Membership, Clock]:
    m = Membership(settings)  # type: ignore[arg-type]
    clock = Clock()
    only(m.handle(Start(clock())), object)
    only(m.handle(CoordinatorFound(clock(0.01))), SendJoin)
    assert join(m, clock, parts, 1) == [Assign(1, parts)]
    assert m.state == State.STABLE and m.generation_protocol == COOP
    return m, clock


def heartbeat(m: Membership, clock: Clock, error: ErrorCode = ErrorCode.NONE) -> list[object]:
    hb = only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    assert isinstance(hb, SendHeartbeat)
    sent = clock()
    return list(m.handle(HeartbeatResponse(clock(0.01), sent, error)))


def test_a_rebalance_keeps_what_the_member_owns() -> None:
    m, clock = stable()
    cmds = heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS)
    join_cmd = only(cmds, SendJoin)  # no Revoke before it
    assert isinstance(join_cmd, SendJoin) and join_cmd.owned == (0, 1, 2)
    assert m.assigned == (0, 1, 2)
    # The next generation gives the same partitions: nothing is revoked, no follow-up.
    assert join(m, clock, (0, 1, 2), 2) == [Assign(2, (0, 1, 2))]
    assert heartbeat(m, clock) == []


def test_a_moved_partition_is_released_in_the_background_then_the_member_rejoins() -> None:
    m, clock = stable()
    only(heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS), SendJoin)
    cmds = join(m, clock, (0, 2), 2)
    assert cmds == [
        Assign(2, (0, 2)),
        Revoke((1,), "moving to another member (generation 2)", False),
    ]
    assert m.owned == (0, 1, 2) and m.releasing == {1}
    # Still a member while it drains: heartbeats go on, and no rejoin before the release.
    assert heartbeat(m, clock) == []
    assert heartbeat(m, clock) == []
    again = only(m.handle(Released(clock(0.5), (1,))), SendJoin)
    assert isinstance(again, SendJoin) and again.owned == (0, 2)
    assert join(m, clock, (0, 2), 3) == [Assign(3, (0, 2))]
    assert heartbeat(m, clock) == []  # settled: no further rejoin


def test_a_join_sent_while_releasing_is_followed_by_another_once_released() -> None:
    m, clock = stable()
    only(heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS), SendJoin)
    join(m, clock, (0, 2), 2)  # 1 moves
    j = only(heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS), SendJoin)
    assert isinstance(j, SendJoin) and j.owned == (0, 1, 2)  # still owns 1: nobody gets it
    assert m.handle(Released(clock(0.1), (1,))) == []  # the join is in flight
    assert join(m, clock, (0, 2), 3) == [Assign(3, (0, 2))]
    # Not at once: the others' SyncGroups of generation 3 must land first (FOLLOWUP_SETTLE).
    assert m.handle(Tick(clock(FOLLOWUP_SETTLE / 2))) == []
    j = only(m.handle(Tick(clock(FOLLOWUP_SETTLE / 2))), SendJoin)  # now 1 can move on
    assert isinstance(j, SendJoin) and j.owned == (0, 2)


def test_losing_the_membership_revokes_everything_moves_included() -> None:
    for error in (ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.ILLEGAL_GENERATION):
        m, clock = stable()
        only(heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS), SendJoin)
        join(m, clock, (0, 2), 2)
        cmds = heartbeat(m, clock, error)
        assert kinds(cmds)[0] is Revoke
        revoke = cmds[0]
        assert isinstance(revoke, Revoke) and revoke.wait and revoke.partitions == (0, 1, 2)
        assert m.owned == ()


def test_a_lapsed_session_fences_even_while_only_releasing() -> None:
    m, clock = stable((0, 1))
    only(heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS), SendJoin)
    join(m, clock, (), 2)  # everything moves away
    assert m.owned == (0, 1) and m.fence_deadline < float("inf")
    cmds = m.handle(Tick(clock(SETTINGS.session_timeout)))
    assert cmds[0] == Revoke((0, 1), "session lapsed without a successful heartbeat", lost=True)
    assert any(isinstance(c, Fenced) for c in cmds)


def test_graceful_close_drains_while_heartbeating_then_leaves() -> None:
    m, clock = stable((0, 1))
    assert m.handle(Leave(clock())) == [Revoke((0, 1), "leave", False)]
    assert m.state == State.STABLE and m.assigned == ()
    assert heartbeat(m, clock) == []  # still a member while the partitions drain
    # A rebalance meanwhile: rejoin as leaving, still owning what drains.
    j = only(heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS), SendJoin)
    assert isinstance(j, SendJoin) and j.leaving and j.owned == (0, 1)
    assert join(m, clock, (), 2) == [Assign(2, ())]
    cmds = m.handle(Released(clock(0.2), (0, 1)))
    assert kinds(cmds) == [Revoke, SendLeave]
    assert m.state == State.LEAVING


def test_an_eager_generation_revokes_before_rejoining() -> None:
    m, clock = stable()
    only(heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS), SendJoin)
    join(m, clock, (0, 1, 2), 2, protocol="eager")  # an eager member joined: eager generation
    cmds = heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS)
    assert cmds == [Revoke((0, 1, 2), "rebalance_in_progress"), cmds[1]]
    assert isinstance(cmds[1], SendJoin) and cmds[1].owned == ()


def test_an_eager_member_revokes_even_after_a_cooperative_generation() -> None:
    m, clock = stable(settings=replace(SETTINGS, rebalance_protocol="eager"))
    cmds = heartbeat(m, clock, ErrorCode.REBALANCE_IN_PROGRESS)
    assert kinds(cmds) == [Revoke, SendJoin]
    # ... and an eager close revokes at once and leaves.
    m2, clock2 = stable(settings=replace(SETTINGS, rebalance_protocol="eager"))
    assert kinds(m2.handle(Leave(clock2()))) == [Revoke, SendLeave]


def test_the_leader_rejoins_when_a_held_back_partition_is_due() -> None:
    m = Membership(SETTINGS)
    clock = Clock()
    m.handle(Start(clock()))
    only(m.handle(CoordinatorFound(clock(0.01))), SendJoin)
    sent = clock()
    jr = JoinResponse(
        clock(0.05), sent, ErrorCode.NONE, 1, "m1", "m1", "roundrobin", {"m1": b"meta"}
    )
    only(m.handle(jr), RunAssignment)
    only(m.handle(AssignmentCommitted(clock(0.01), 1, b"ptr", followup=4.0)), SendSync)
    sent = clock()
    only(m.handle(SyncResponse(clock(0.05), sent, ErrorCode.NONE, b"ptr")), ReadAssignment)
    m.handle(AssignmentRead(clock(0.01), 1, (0, 1), COOP))
    deadline = m.next_deadline()
    assert deadline is not None
    assert heartbeat(m, clock) == []  # 1 s: not yet
    j = only(m.handle(Tick(clock(3.5))), SendJoin)
    assert isinstance(j, SendJoin) and j.owned == (0, 1)
    assert "held-back" in j.reason
