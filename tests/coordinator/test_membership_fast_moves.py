"""How fast a cooperative move's second step comes, driven directly (no broker, no clock).

The member that released partitions rejoins once they are released and the generation has
settled: FOLLOWUP_SETTLE on a coordinator not known to answer followers' SyncGroups at once
(Tansu), PROMPT_SETTLE on one that does (`CoordinatorFound.prompt_sync`: Apache Kafka). The
other members learn of that follow-up rebalance from a heartbeat, so while a generation that
moves partitions is fresh they beat every MOVING_HEARTBEAT instead of the configured interval.
"""

from __future__ import annotations

import pytest

from ringleader.coordinator.errors import ErrorCode
from ringleader.coordinator.membership import (
    FOLLOWUP_SETTLE,
    MOVING_HEARTBEAT,
    MOVING_WINDOW,
    PROMPT_SETTLE,
    Membership,
)
from ringleader.coordinator.messages import (
    Assign,
    CoordinatorFound,
    HeartbeatResponse,
    Released,
    Revoke,
    SendHeartbeat,
    SendJoin,
    Start,
    State,
    Tick,
)
from tests.coordinator.membership_kit import SETTINGS, Clock, join, only

COOP = "cooperative"


def stable(parts: tuple[int, ...], *, prompt_sync: bool) -> tuple[Membership, Clock]:
    m = Membership(SETTINGS)
    clock = Clock()
    only(m.handle(Start(clock())), object)
    only(m.handle(CoordinatorFound(clock(0.01), prompt_sync=prompt_sync)), SendJoin)
    assert join(m, clock, parts, 1) == [Assign(1, parts)]
    assert m.state == State.STABLE
    return m, clock


def next_beat_after(m: Membership, clock: Clock, step: float = 0.01) -> float:
    """Seconds of ticks until the machine sends its next heartbeat (answered at once)."""
    waited = 0.0
    while waited < 5 * SETTINGS.heartbeat_interval:
        waited += step
        cmds = m.handle(Tick(clock(step)))
        if cmds:
            only(cmds, SendHeartbeat)
            sent = clock()
            assert m.handle(HeartbeatResponse(clock(), sent, ErrorCode.NONE)) == []
            return waited
    raise AssertionError("no heartbeat")


@pytest.mark.parametrize(
    ("prompt_sync", "settle"), [(True, PROMPT_SETTLE), (False, FOLLOWUP_SETTLE)]
)
def test_the_releasing_member_rejoins_after_the_settle_its_coordinator_needs(
    prompt_sync: bool, settle: float
) -> None:
    m, clock = stable((0, 1, 2), prompt_sync=prompt_sync)
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    sent = clock()
    only(m.handle(HeartbeatResponse(clock(0.01), sent, ErrorCode.REBALANCE_IN_PROGRESS)), SendJoin)
    cmds = join(m, clock, (0, 2), 2, moving=True)
    assert cmds == [
        Assign(2, (0, 2)),
        Revoke((1,), "moving to another member (generation 2)", False),
    ]
    applied = clock()
    # Released at once (an idle partition): the rejoin still waits out the settle.
    assert m.handle(Released(clock(0.001), (1,))) == []
    while True:  # ticks of 10 ms, heartbeats answered, until the rejoin
        cmds = m.handle(Tick(clock(0.01)))
        if cmds and isinstance(cmds[0], SendHeartbeat):
            sent = clock()
            assert m.handle(HeartbeatResponse(clock(), sent, ErrorCode.NONE)) == []
        elif cmds:
            break
    j = only(cmds, SendJoin)
    assert isinstance(j, SendJoin) and j.owned == (0, 2)
    assert clock() - applied == pytest.approx(settle, abs=0.015)


def test_while_a_move_is_fresh_the_others_beat_often_then_at_the_interval_again() -> None:
    m, clock = stable((3, 4), prompt_sync=True)
    next_beat_after(m, clock)  # the first counts from the SyncGroup's send
    assert next_beat_after(m, clock) == pytest.approx(SETTINGS.heartbeat_interval, abs=0.02)
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    sent = clock()
    only(m.handle(HeartbeatResponse(clock(0.01), sent, ErrorCode.REBALANCE_IN_PROGRESS)), SendJoin)
    # A bystander of the move (keeps 3 and 4; someone else releases a partition).
    assert join(m, clock, (3, 4), 2, moving=True) == [Assign(2, (3, 4))]
    applied = clock()
    beats = []
    while clock() < applied + MOVING_WINDOW - 0.2:
        beats.append(next_beat_after(m, clock))
    assert max(beats) <= MOVING_HEARTBEAT + 0.02
    clock(0.3)  # the window is over
    next_beat_after(m, clock)
    assert next_beat_after(m, clock) == pytest.approx(SETTINGS.heartbeat_interval, abs=0.02)


def test_a_generation_that_moves_nothing_keeps_the_interval() -> None:
    m, clock = stable((3, 4), prompt_sync=True)
    only(m.handle(Tick(clock(1.0))), SendHeartbeat)
    sent = clock()
    only(m.handle(HeartbeatResponse(clock(0.01), sent, ErrorCode.REBALANCE_IN_PROGRESS)), SendJoin)
    assert join(m, clock, (3, 4), 2) == [Assign(2, (3, 4))]
    next_beat_after(m, clock)
    assert next_beat_after(m, clock) == pytest.approx(SETTINGS.heartbeat_interval, abs=0.02)
