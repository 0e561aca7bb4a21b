"""The membership machine fencing itself, failing for good, and leaving (no broker, no clock)."""

from __future__ import annotations

import pytest

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.membership import Membership
from ringleader.coordinator.messages import (
    AssignmentRead,
    CoordinatorFound,
    Fenced,
    FindCoordinator,
    HeartbeatResponse,
    JoinResponse,
    Leave,
    LeaveResponse,
    Request,
    RequestFailed,
    Revoke,
    SendHeartbeat,
    SendJoin,
    SendLeave,
    Start,
    State,
    SyncResponse,
    Tick,
)
from ringleader.coordinator.settings import MemberSettings
from tests.coordinator.membership_kit import SETTINGS, Clock, joined_follower, kinds, only


def test_self_fences_before_the_broker_can_reassign() -> None:
    """A member whose heartbeats stop succeeding revokes at session - margin, then rejoins."""
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock, (0, 2))
    last_contact = m.fence_deadline - 4.0  # session 6 s - margin 2 s
    # Heartbeats fail (coordinator unreachable); the member keeps its partitions for now.
    t = clock(1.0)
    only(m.handle(Tick(t)), SendHeartbeat)
    m.handle(RequestFailed(clock(0.5), Request.HEARTBEAT, "timeout"))
    assert m.assigned == (0, 2)
    # Rediscovery keeps failing until the fence deadline.
    while True:
        nxt = m.next_deadline()
        assert nxt is not None
        cmds = m.handle(Tick(nxt))
        if any(isinstance(c, Revoke) for c in cmds):
            break
        assert kinds(cmds) == [FindCoordinator]
        m.handle(RequestFailed(nxt + 0.01, Request.FIND, "down"))
    assert nxt == pytest.approx(last_contact + 6.0 - 2.0)
    assert nxt < last_contact + 6.0  # strictly before the broker's session expiry
    assert isinstance(cmds[0], Revoke) and cmds[0].partitions == (0, 2)
    assert isinstance(cmds[1], Fenced) and not cmds[1].fatal
    assert m.assigned is None and m.state == State.FINDING_COORDINATOR


def test_paused_member_revokes_on_the_first_event_after_resuming() -> None:
    """SIGSTOP: no ticks at all while stopped; the first event after SIGCONT fences."""
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock, (5,))
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    sent = clock()
    m.handle(HeartbeatResponse(clock(0.01), sent, ErrorCode.NONE))
    # Stopped for 30 s; resumed. Even before asking the broker, it revokes.
    cmds = m.handle(Tick(clock(30.0)))
    assert kinds(cmds) == [Revoke, Fenced, SendJoin]
    # Lost, not revoked: others may own them soon, so the worker lets go without draining.
    assert cmds[0] == Revoke((5,), "session lapsed without a successful heartbeat", lost=True)


def test_late_successful_heartbeat_extends_the_session_from_when_it_was_sent() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock)
    before = m.fence_deadline
    hb = only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    sent = clock()
    assert isinstance(hb, SendHeartbeat) and hb.timeout <= before - sent + 1e-9
    m.handle(HeartbeatResponse(clock(2.0), sent, ErrorCode.NONE))
    assert m.fence_deadline == pytest.approx(sent + 4.0)
    assert m.assigned == (0, 2)


def test_heartbeat_answer_after_fencing_is_ignored() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock)
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    sent = clock()
    # The answer arrives after the fence deadline and says the session is gone.
    cmds = m.handle(HeartbeatResponse(clock(10.0), sent - 10.0, ErrorCode.UNKNOWN_MEMBER_ID))
    assert kinds(cmds) == [Revoke, SendJoin]
    assert m.member_id == ""


def test_assignment_read_after_session_lapsed_is_not_applied() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    m.handle(JoinResponse(clock(), clock(), ErrorCode.NONE, 4, "m1", "m0", "rr"))
    m.handle(SyncResponse(clock(), clock(), ErrorCode.NONE, b"ptr"))
    cmds = m.handle(AssignmentRead(clock(20.0), 4, (1,)))
    assert kinds(cmds) == [SendJoin]
    assert m.assigned is None


def test_static_membership_carries_instance_id_and_fenced_instance_is_fatal() -> None:
    clock = Clock()
    settings = MemberSettings(
        group_id="g",
        session_timeout_ms=6000,
        rebalance_timeout_ms=10000,
        group_instance_id="worker-7",
    )
    m = Membership(settings)
    m.handle(Start(clock()))
    join = only(m.handle(CoordinatorFound(clock())), SendJoin)
    assert isinstance(join, SendJoin) and join.group_instance_id == "worker-7"
    m.handle(JoinResponse(clock(), clock(), ErrorCode.NONE, 1, "m1", "m0", "rr"))
    m.handle(SyncResponse(clock(), clock(), ErrorCode.NONE, b"p"))
    m.handle(AssignmentRead(clock(), 1, (4,)))
    hb = only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    assert isinstance(hb, SendHeartbeat) and hb.group_instance_id == "worker-7"
    cmds = m.handle(HeartbeatResponse(clock(), clock(), ErrorCode.FENCED_INSTANCE_ID))
    assert [type(c) for c in cmds] == [Revoke, Fenced]
    assert isinstance(cmds[1], Fenced) and cmds[1].fatal
    assert m.state == State.FENCED
    assert m.handle(Tick(clock(100.0))) == []
    assert m.next_deadline() is None


def test_static_member_close_does_not_send_leave() -> None:
    clock = Clock()
    settings = MemberSettings(group_id="g", group_instance_id="worker-7")
    m = Membership(settings)
    joined_follower(m, clock)
    assert m.handle(Leave(clock())) == [Revoke((0, 2), "leave")]
    assert m.state == State.CLOSED


def test_leave_revokes_first_then_leaves() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock)
    cmds = m.handle(Leave(clock()))
    assert kinds(cmds) == [Revoke, SendLeave]
    assert cmds[1] == SendLeave("m1", None, 5.0)
    assert (m.state, m.inflight) == (State.LEAVING, Request.LEAVE)
    assert m.handle(LeaveResponse(clock(), ErrorCode.NONE)) == []
    assert m.state == State.CLOSED
    assert m.handle(Tick(clock(50.0))) == []


def test_leave_abandons_a_blocked_join() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    m.handle(JoinResponse(clock(), clock(), ErrorCode.MEMBER_ID_REQUIRED, member_id="m1"))
    assert m.inflight == Request.JOIN
    assert m.handle(Leave(clock())) == [SendLeave("m1", None, 5.0)]


def test_leave_before_start_closes() -> None:
    m = Membership(SETTINGS)
    assert m.handle(Leave(1.0)) == []
    assert m.state == State.CLOSED


def test_fatal_join_error() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    cmds = m.handle(JoinResponse(clock(), clock(), ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
    assert cmds == [Fenced("JoinGroup: INCONSISTENT_GROUP_PROTOCOL", fatal=True)]
    assert m.state == State.FENCED


def test_a_refused_client_stops_for_good_and_revokes() -> None:
    """Credentials or TLS the broker refuses cannot get better by retrying: a fatal
    RequestFailed fences for good (revoking what the member held) instead of looping."""
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    cmds = m.handle(RequestFailed(clock(), Request.FIND, "auth failed", fatal=True))
    assert cmds == [Fenced("find-coordinator failed: auth failed", fatal=True)]
    assert m.state == State.FENCED

    m = Membership(SETTINGS)
    joined_follower(m, clock, (0, 2))
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    cmds = m.handle(RequestFailed(clock(), Request.HEARTBEAT, "tls", fatal=True))
    assert [type(c) for c in cmds] == [Revoke, Fenced]
    assert isinstance(cmds[0], Revoke) and cmds[0].partitions == (0, 2) and cmds[0].lost
    assert m.state == State.FENCED
