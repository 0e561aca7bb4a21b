"""Pause and Resume: a member that cannot serve its partitions leaves and stays out."""

from __future__ import annotations

from dataclasses import replace

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.membership import Membership
from ringleader.coordinator.messages import (
    CoordinatorFound,
    FindCoordinator,
    HeartbeatResponse,
    JoinResponse,
    Leave,
    LeaveResponse,
    Pause,
    Request,
    RequestFailed,
    Resume,
    Revoke,
    SendHeartbeat,
    SendJoin,
    SendLeave,
    Start,
    State,
    Tick,
)
from tests.coordinator.membership_kit import SETTINGS, Clock, joined_follower, kinds, only


def test_pause_revokes_then_leaves_and_stays_out() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    joined_follower(m, clock, (0, 2))
    out = m.handle(Pause(clock(0.1), "redis unreachable"))
    assert kinds(out) == [Revoke, SendLeave]
    revoke, leave = out
    assert isinstance(revoke, Revoke) and revoke.partitions == (0, 2)
    assert "redis unreachable" in revoke.reason
    assert isinstance(leave, SendLeave) and leave.member_id == "m1"
    assert m.state == State.LEAVING and m.assigned is None
    assert m.handle(LeaveResponse(clock(0.01), ErrorCode.NONE)) == []
    assert m.state == State.PAUSED and m.pause_reason == "redis unreachable"
    # Out for good until told: no heartbeat, no join, no deadline, however long it waits.
    assert m.next_deadline() is None
    assert m.handle(Tick(clock(600.0))) == []
    assert m.state == State.PAUSED


def test_resume_joins_afresh() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    joined_follower(m, clock)
    m.handle(Pause(clock(), "redis unreachable"))
    m.handle(LeaveResponse(clock(), ErrorCode.NONE))
    join = only(m.handle(Resume(clock(5.0))), SendJoin)
    assert isinstance(join, SendJoin) and join.member_id == "" and join.reason == "resumed"
    assert m.state == State.JOINING and m.pause_reason is None


def test_failed_leave_still_pauses() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    joined_follower(m, clock)
    m.handle(Pause(clock(), "redis unreachable"))
    assert m.handle(RequestFailed(clock(), Request.LEAVE, "connection reset")) == []
    assert m.state == State.PAUSED


def test_resume_while_the_leave_is_in_flight_rejoins_when_it_ends() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    joined_follower(m, clock)
    m.handle(Pause(clock(), "redis unreachable"))
    assert m.handle(Resume(clock())) == []  # the LeaveGroup is still in flight
    assert m.state == State.LEAVING
    only(m.handle(LeaveResponse(clock(), ErrorCode.NONE)), SendJoin)
    assert m.state == State.JOINING


def test_pause_before_start_never_joins() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    assert m.handle(Pause(clock(), "redis unreachable")) == []
    assert m.handle(Start(clock())) == []
    assert m.state == State.PAUSED and m.next_deadline() is None
    only(m.handle(Resume(clock(1.0))), FindCoordinator)
    assert m.state == State.FINDING_COORDINATOR


def test_pause_while_joining_abandons_the_join() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    only(m.handle(Start(clock())), FindCoordinator)
    only(m.handle(CoordinatorFound(clock())), SendJoin)
    # No member id yet: nothing to leave, straight to PAUSED; the join is abandoned.
    assert m.handle(Pause(clock(), "redis unreachable")) == []
    assert m.state == State.PAUSED and m.inflight is None


def test_pause_after_join_before_assignment_leaves_without_revoking() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    only(m.handle(Start(clock())), FindCoordinator)
    only(m.handle(CoordinatorFound(clock())), SendJoin)
    sent = clock()
    m.handle(JoinResponse(clock(), sent, ErrorCode.NONE, 3, "m1", "m0", "roundrobin"))
    # The SyncGroup it asked for is abandoned: the member leaves the new generation.
    out = m.handle(Pause(clock(), "redis unreachable"))
    assert kinds(out) == [SendLeave]
    m.handle(LeaveResponse(clock(), ErrorCode.NONE))
    assert m.state == State.PAUSED and m.assigned is None


def test_paused_static_member_leaves_with_its_instance_id() -> None:
    clock, m = Clock(), Membership(replace(SETTINGS, group_instance_id="w-1"))
    joined_follower(m, clock)
    leave = m.handle(Pause(clock(), "redis unreachable"))[-1]
    # Unlike close, which keeps a static member's place: the others must take over now.
    assert isinstance(leave, SendLeave) and leave.group_instance_id == "w-1"


def test_close_while_paused_closes_and_pause_after_close_is_ignored() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    joined_follower(m, clock)
    m.handle(Pause(clock(), "redis unreachable"))
    m.handle(LeaveResponse(clock(), ErrorCode.NONE))
    assert m.handle(Leave(clock())) == []
    assert m.state == State.CLOSED

    m2 = Membership(SETTINGS)
    joined_follower(m2, clock)
    assert kinds(m2.handle(Leave(clock()))) == [Revoke, SendLeave]
    assert m2.handle(Pause(clock(), "redis unreachable")) == []
    assert m2.state == State.LEAVING
    m2.handle(LeaveResponse(clock(), ErrorCode.NONE))
    assert m2.state == State.CLOSED


def test_pause_twice_and_resume_unpaused_are_harmless() -> None:
    clock, m = Clock(), Membership(SETTINGS)
    joined_follower(m, clock)
    assert m.handle(Resume(clock())) == []  # not paused: nothing happens
    hb = only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    assert isinstance(hb, SendHeartbeat)
    m.handle(HeartbeatResponse(clock(), clock(), ErrorCode.NONE))
    m.handle(Pause(clock(), "first"))
    m.handle(LeaveResponse(clock(), ErrorCode.NONE))
    assert m.handle(Pause(clock(), "second")) == []
    assert m.state == State.PAUSED and m.pause_reason == "second"
