"""The membership state machine, driven directly with injected time (no broker, no clock)."""

from __future__ import annotations

import pytest

from ringleader.coordinator.errors import ConfigError, ErrorCode
from ringleader.coordinator.membership import Membership, MembershipProtocolError
from ringleader.coordinator.messages import (
    Assign,
    AssignmentCommitted,
    AssignmentRead,
    CoordinatorFound,
    FindCoordinator,
    HeartbeatResponse,
    JoinResponse,
    ReadAssignment,
    Request,
    RequestFailed,
    Revoke,
    RunAssignment,
    SendHeartbeat,
    SendJoin,
    SendSync,
    Start,
    State,
    SyncResponse,
    Tick,
)
from ringleader.coordinator.settings import MemberSettings
from tests.coordinator.membership_kit import SETTINGS, Clock, joined_follower, kinds, only


def test_settings_validation_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="group_id"):
        MemberSettings(group_id="")
    with pytest.raises(ConfigError, match="heartbeat_interval_ms"):
        MemberSettings(group_id="g", session_timeout_ms=1000, heartbeat_interval_ms=1000)
    with pytest.raises(ConfigError, match="fence_margin_ms"):
        MemberSettings(group_id="g", session_timeout_ms=3000, fence_margin_ms=2800)
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


def test_a_rebalance_is_timed_from_leaving_stable_to_the_generation_applied() -> None:
    clock = Clock()
    m = Membership(SETTINGS)
    t0 = clock.t
    joined_follower(m, clock, (1, 3))  # the first join is a rebalance too
    assert m.rebalances == 1
    assert m.last_rebalance == pytest.approx(clock.t - t0)
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    left = clock(0.01)
    cmds = m.handle(HeartbeatResponse(left, clock(), ErrorCode.REBALANCE_IN_PROGRESS))
    join = cmds[-1]
    assert isinstance(join, SendJoin) and m.rebalances == 1  # under way, not counted yet
    resp = JoinResponse(clock(0.4), left, ErrorCode.NONE, 2, "m1", "m0", "roundrobin")
    only(m.handle(resp), SendSync)
    sent = clock()
    only(m.handle(SyncResponse(clock(0.3), sent, ErrorCode.NONE, b"ptr")), ReadAssignment)
    only(m.handle(AssignmentRead(clock(0.1), 2, (1,))), Assign)
    assert m.rebalances == 2
    assert m.last_rebalance == pytest.approx(0.8)
