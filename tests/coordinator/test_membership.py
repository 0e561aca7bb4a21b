"""The membership state machine, driven directly with injected time (no broker, no clock)."""

from __future__ import annotations

import pytest

from ringleader.coordinator.errors import ConfigError, ErrorCode
from ringleader.coordinator.membership import Membership, MembershipProtocolError
from ringleader.coordinator.messages import (
    Assign,
    AssignmentCommitted,
    AssignmentRead,
    Command,
    CoordinatorFound,
    Fenced,
    FindCoordinator,
    HeartbeatResponse,
    JoinResponse,
    Leave,
    LeaveResponse,
    ReadAssignment,
    Request,
    RequestFailed,
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


def test_settings_validation_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="group_id"):
        MemberSettings(group_id="")
    with pytest.raises(ConfigError, match="heartbeat_interval_ms"):
        MemberSettings(group_id="g", session_timeout_ms=1000, heartbeat_interval_ms=1000)
    with pytest.raises(ConfigError, match="fence_margin_ms"):
        MemberSettings(group_id="g", session_timeout_ms=3000, fence_margin_ms=2500)
    with pytest.raises(ConfigError, match="session_timeout_ms"):
        MemberSettings(group_id="g", session_timeout_ms=-5)
    with pytest.raises(ConfigError, match="rebalance_timeout_ms"):
        MemberSettings(group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=5000)


def test_settings_from_env() -> None:
    s = MemberSettings.from_env(
        {
            "RINGLEADER_GROUP_ID": "workers",
            "RINGLEADER_SESSION_TIMEOUT_MS": "6000",
            "RINGLEADER_GROUP_INSTANCE_ID": "w-1",
            "RINGLEADER_ASSIGNOR": "sticky",
        }
    )
    assert (s.group_id, s.session_timeout_ms, s.group_instance_id, s.assignor) == (
        "workers",
        6000,
        "w-1",
        "sticky",
    )
    with pytest.raises(ConfigError, match="RINGLEADER_GROUP_ID"):
        MemberSettings.from_env({})
    with pytest.raises(ConfigError, match="RINGLEADER_HEARTBEAT_INTERVAL_MS"):
        MemberSettings.from_env(
            {"RINGLEADER_GROUP_ID": "g", "RINGLEADER_HEARTBEAT_INTERVAL_MS": "x"}
        )


def test_member_id_required_handshake_then_leader_commits_before_sync() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    only(m.handle(Start(clock())), FindCoordinator)
    join = only(m.handle(CoordinatorFound(clock())), SendJoin)
    assert isinstance(join, SendJoin) and join.member_id == ""
    # Broker assigns an id and asks to join again with it, at once.
    rejoin = only(
        m.handle(JoinResponse(clock(), clock(), ErrorCode.MEMBER_ID_REQUIRED, member_id="m0")),
        SendJoin,
    )
    assert isinstance(rejoin, SendJoin) and rejoin.member_id == "m0"
    members = {"m0": b"a", "m1": b"b"}
    run = only(
        m.handle(
            JoinResponse(clock(), clock(), ErrorCode.NONE, 0, "m0", "m0", "roundrobin", members)
        ),
        RunAssignment,
    )
    assert run == RunAssignment(0, "m0", members)
    assert m.state == State.ASSIGNING and m.is_leader and m.generation == 0
    sync = only(m.handle(AssignmentCommitted(clock(), 0, b"ptr")), SendSync)
    # Every member (leader included) gets the same non-empty pointer blob.
    assert isinstance(sync, SendSync) and sync.assignments == {"m0": b"ptr", "m1": b"ptr"}
    only(m.handle(SyncResponse(clock(), clock(), ErrorCode.NONE, b"ptr")), ReadAssignment)
    assert m.handle(AssignmentRead(clock(), 0, (0, 1, 2))) == [Assign(0, (0, 1, 2))]
    assert m.assigned == (0, 1, 2)


def test_leader_publish_failure_rejoins_without_syncing() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    m.handle(JoinResponse(clock(), clock(), ErrorCode.NONE, 3, "m0", "m0", "rr", {"m0": b"a"}))
    assert m.handle(RequestFailed(clock(), Request.ASSIGN, "broker down")) == []
    assert m.state == State.JOINING
    join = only(m.handle(Tick(clock(0.2))), SendJoin)
    assert isinstance(join, SendJoin) and join.member_id == "m0"


def test_heartbeats_follow_the_interval() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock)
    assert m.handle(Tick(clock(0.5))) == []
    deadline = m.next_deadline()
    assert deadline is not None
    hb = only(m.handle(Tick(deadline)), SendHeartbeat)
    assert isinstance(hb, SendHeartbeat) and (hb.generation, hb.member_id) == (1, "m1")
    clock.t = deadline
    sent = clock()
    assert m.handle(HeartbeatResponse(clock(0.01), sent, ErrorCode.NONE)) == []
    assert m.handle(Tick(sent + 0.99)) == []
    only(m.handle(Tick(sent + 1.0)), SendHeartbeat)


@pytest.mark.parametrize(
    ("error", "keeps_id"),
    [
        (ErrorCode.REBALANCE_IN_PROGRESS, True),
        (ErrorCode.ILLEGAL_GENERATION, True),
        (ErrorCode.UNKNOWN_MEMBER_ID, False),
    ],
)
def test_rebalance_signals_revoke_before_rejoin(error: ErrorCode, keeps_id: bool) -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock, (1, 3))
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    cmds = m.handle(HeartbeatResponse(clock(0.01), clock(), error))
    assert kinds(cmds) == [Revoke, SendJoin]
    assert isinstance(cmds[0], Revoke) and cmds[0].partitions == (1, 3)
    join = cmds[1]
    assert isinstance(join, SendJoin)
    assert join.member_id == ("m1" if keeps_id else "")
    assert m.assigned is None and m.state == State.JOINING


def test_coordinator_moved_keeps_partitions_and_rediscovers() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock)
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    sent = clock()
    assert m.handle(HeartbeatResponse(clock(0.01), sent, ErrorCode.NOT_COORDINATOR)) == []
    assert m.assigned == (0, 2) and not m.coordinator_known
    only(m.handle(Tick(clock(0.2))), FindCoordinator)
    # The new coordinator gets a heartbeat straight away, same generation.
    hb = only(m.handle(CoordinatorFound(clock(0.1))), SendHeartbeat)
    assert isinstance(hb, SendHeartbeat) and hb.generation == 1
    assert m.handle(HeartbeatResponse(clock(0.01), clock(), ErrorCode.NONE)) == []
    assert m.state == State.STABLE and m.assigned == (0, 2)


@pytest.mark.parametrize("error", [ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.NOT_COORDINATOR])
def test_join_coordinator_errors_rediscover(error: ErrorCode) -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    assert m.handle(JoinResponse(clock(), clock(), error)) == []
    assert m.state == State.FINDING_COORDINATOR
    assert m.handle(Tick(clock(0.1))) == []  # backoff
    only(m.handle(Tick(clock(0.11))), FindCoordinator)
    only(m.handle(CoordinatorFound(clock())), SendJoin)


def test_connection_lost_during_join_rediscovers_with_backoff() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    assert m.handle(RequestFailed(clock(), Request.JOIN, "reset")) == []
    assert m.next_deadline() == pytest.approx(clock() + 0.2)
    only(m.handle(Tick(clock(0.2))), FindCoordinator)
    assert m.handle(RequestFailed(clock(), Request.FIND, "no broker")) == []
    only(m.handle(Tick(clock(0.2))), FindCoordinator)


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
    assert cmds[0] == Revoke((5,), "session lapsed without a successful heartbeat")


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


def test_inconsistent_assignment_is_never_applied() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    m.handle(JoinResponse(clock(), clock(), ErrorCode.NONE, 4, "m1", "m0", "rr"))
    m.handle(SyncResponse(clock(), clock(), ErrorCode.NONE, b"ptr"))
    assert m.handle(AssignmentRead(clock(), 4, None)) == []
    assert m.assigned is None and m.state == State.JOINING
    only(m.handle(Tick(clock(0.2))), SendJoin)


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


@pytest.mark.parametrize(
    "error",
    [ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID],
)
def test_sync_errors_rejoin(error: ErrorCode) -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    m.handle(JoinResponse(clock(), clock(), ErrorCode.NONE, 4, "m1", "m0", "rr"))
    join = only(m.handle(SyncResponse(clock(), clock(), error)), SendJoin)
    assert isinstance(join, SendJoin)
    assert join.member_id == ("" if error == ErrorCode.UNKNOWN_MEMBER_ID else "m1")


def test_empty_sync_blob_is_not_an_assignment() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    m.handle(JoinResponse(clock(), clock(), ErrorCode.NONE, 4, "m1", "m0", "rr"))
    assert m.handle(SyncResponse(clock(), clock(), ErrorCode.NONE, b"")) == []
    assert m.state == State.JOINING


def test_join_rebalance_in_progress_retries_join() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    m.handle(Start(clock()))
    m.handle(CoordinatorFound(clock()))
    m.handle(JoinResponse(clock(), clock(), ErrorCode.MEMBER_ID_REQUIRED, member_id="m1"))
    join = only(m.handle(JoinResponse(clock(), clock(), ErrorCode.REBALANCE_IN_PROGRESS)), SendJoin)
    assert isinstance(join, SendJoin) and join.member_id == "m1"


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
    assert kinds(cmds) == [Revoke, Fenced]
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


def test_misfed_events_are_protocol_errors() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    with pytest.raises(MembershipProtocolError):
        m.handle(JoinResponse(clock(), clock(), ErrorCode.NONE))
    m.handle(Start(clock()))
    with pytest.raises(MembershipProtocolError):
        m.handle(Start(clock()))
    with pytest.raises(MembershipProtocolError):
        m.handle(HeartbeatResponse(clock(), clock(), ErrorCode.NONE))


def test_generation_zero_is_a_generation() -> None:
    """Tansu starts generations at 0."""
    clock = Clock()
    m = Membership(SETTINGS)
    joined_follower(m, clock, (0,), gen=0)
    hb = only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    assert isinstance(hb, SendHeartbeat) and hb.generation == 0
