"""A JoinGroup the broker held: a heartbeat dates the session before the generation goes on.

The broker keeps a member alive while it holds its JoinGroup (for the other members; Tansu
holds every join for half the session) and restarts the session when the join completes. The
machine cannot know when that was, only that it was after the join was sent; so after a held
join it heartbeats (both brokers answer between join and sync) and counts the session from
that heartbeat. Without it a cooperative member fenced itself mid-rebalance on a loaded
machine: the hold plus the leader's 2PC outlasted session - margin from the join's send time.
"""

from __future__ import annotations

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.membership import Membership
from ringleader.coordinator.messages import (
    Assign,
    AssignmentCommitted,
    AssignmentRead,
    CoordinatorFound,
    Fenced,
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
from tests.coordinator.membership_kit import SETTINGS, Clock, join, kinds, only

HOLD = 3.0  # Tansu holds a join for half of SETTINGS' 6 s session
BUDGET = (SETTINGS.session_timeout_ms - SETTINGS.fence_margin_ms) / 1000  # 4 s


def rebalancing() -> tuple[Membership, Clock, float]:
    """A cooperative member holding (0, 1, 2) in generation 1, its rejoin just sent; returns
    the machine, the clock and when the JoinGroup was sent."""
    m = Membership(SETTINGS)
    clock = Clock()
    only(m.handle(Start(clock())), FindCoordinator)
    only(m.handle(CoordinatorFound(clock(0.01))), SendJoin)
    assert join(m, clock, (0, 1, 2), 1) == [Assign(1, (0, 1, 2))]
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    sent = clock()
    resp = HeartbeatResponse(clock(0.01), sent, ErrorCode.REBALANCE_IN_PROGRESS)
    only(m.handle(resp), SendJoin)  # cooperative: nothing revoked
    return m, clock, clock()


def held_join(m: Membership, clock: Clock, sent: float, leader: str) -> SendHeartbeat:
    members = {"m0": b"", "m1": b""}
    jr = JoinResponse(clock(HOLD), sent, ErrorCode.NONE, 2, "m1", leader, "roundrobin", members)
    hb = only(m.handle(jr), SendHeartbeat)
    assert isinstance(hb, SendHeartbeat) and hb.generation == 2 and m.state == State.CONFIRMING
    assert m.inflight == Request.HEARTBEAT
    # Bounded by the fence the join's send time still sets.
    assert hb.timeout <= sent + BUDGET - clock() + 1e-9
    return hb


def test_a_leader_after_a_held_join_gets_the_whole_session_for_its_commit() -> None:
    m, clock, sent = rebalancing()
    held_join(m, clock, sent, leader="m1")
    hb_sent = clock()
    run = only(m.handle(HeartbeatResponse(clock(0.01), hb_sent, ErrorCode.NONE)), RunAssignment)
    assert isinstance(run, RunAssignment) and run.generation == 2 and m.state == State.ASSIGNING
    # The 2PC ends past the join's send time + budget, within the heartbeat's: no fence.
    assert clock() + 3.0 > sent + BUDGET
    cmds = m.handle(AssignmentCommitted(clock(3.0), 2, b"ptr"))
    assert kinds(cmds) == [SendSync], cmds
    assert m.assigned == (0, 1, 2)
    assert m.fence_deadline == hb_sent + BUDGET


def test_a_follower_after_a_held_join_syncs_once_the_heartbeat_dates_the_session() -> None:
    m, clock, sent = rebalancing()
    held_join(m, clock, sent, leader="m0")
    hb_sent = clock()
    sync = only(m.handle(HeartbeatResponse(clock(0.01), hb_sent, ErrorCode.NONE)), SendSync)
    assert isinstance(sync, SendSync) and sync.assignments == {}
    # The leader's commit takes 3 s: past the join's send time + budget, no fence.
    only(m.handle(SyncResponse(clock(3.0), clock(), ErrorCode.NONE, b"ptr")), ReadAssignment)
    cmds = m.handle(AssignmentRead(clock(0.01), 2, (0, 1, 2), "cooperative"))
    assert cmds == [Assign(2, (0, 1, 2))]
    assert m.state == State.STABLE


def test_a_join_answered_within_a_heartbeat_interval_goes_straight_on() -> None:
    m, clock, sent = rebalancing()
    members = {"m0": b"", "m1": b""}
    jr = JoinResponse(clock(0.05), sent, ErrorCode.NONE, 2, "m1", "m1", "roundrobin", members)
    only(m.handle(jr), RunAssignment)
    assert m.fence_deadline == sent + BUDGET


def test_a_new_rebalance_during_the_confirming_heartbeat_rejoins_keeping_partitions() -> None:
    m, clock, sent = rebalancing()
    held_join(m, clock, sent, leader="m1")
    cmds = m.handle(HeartbeatResponse(clock(0.01), clock(), ErrorCode.REBALANCE_IN_PROGRESS))
    assert kinds(cmds) == [SendJoin], cmds
    assert m.assigned == (0, 1, 2)


def test_a_stale_generation_on_the_confirming_heartbeat_revokes_as_lost() -> None:
    m, clock, sent = rebalancing()
    held_join(m, clock, sent, leader="m0")
    cmds = m.handle(HeartbeatResponse(clock(0.01), clock(), ErrorCode.ILLEGAL_GENERATION))
    assert kinds(cmds) == [Revoke, SendJoin], cmds
    revoke = cmds[0]
    assert isinstance(revoke, Revoke) and revoke.lost and revoke.partitions == (0, 1, 2)


def test_a_failed_confirming_heartbeat_rediscovers_the_coordinator_after_a_backoff() -> None:
    m, clock, sent = rebalancing()
    held_join(m, clock, sent, leader="m1")
    assert m.handle(RequestFailed(clock(0.01), Request.HEARTBEAT, "connection reset")) == []
    assert m.state == State.FINDING_COORDINATOR and m.assigned == (0, 1, 2)
    only(m.handle(Tick(clock(SETTINGS.retry_backoff_ms / 1000))), FindCoordinator)


def test_a_confirming_heartbeat_answered_after_the_fence_is_ignored() -> None:
    m, clock, sent = rebalancing()
    held_join(m, clock, sent, leader="m1")
    hb_sent = clock()
    cmds = m.handle(Tick(clock(BUDGET - HOLD)))  # the join's fence deadline passes
    assert kinds(cmds) == [Revoke, Fenced], cmds
    assert m.assigned is None
    # The late answer is awaited, then the member joins again; it never assigns generation 2.
    late = m.handle(HeartbeatResponse(clock(0.01), hb_sent, ErrorCode.NONE))
    assert kinds(late) == [SendJoin], late
