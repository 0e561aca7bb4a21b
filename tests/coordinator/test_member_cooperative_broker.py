"""Cooperative rebalancing with member processes on real brokers (Apache Kafka and Tansu).

The ledgers of tests/coordinator/member_proc.py say when each partition was assigned and
revoked; the checks: a join or a death moves only the partitions balance needs, partitions
that stay are never revoked, no partition is owned by two members at overlapping times, a
static member that comes back within the scheduled delay gets its own partitions back and one
that does not is replaced once the delay is over, and a group with an eager member is safe.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.coordinator.member_group import SESSION_MS, Group, Settled, start_three, wait_for


@pytest.fixture
def group(broker: str, unique_name: str, tmp_path: Path) -> Iterator[Group]:
    g = Group(broker, unique_name, tmp_path)
    g.create_topics()
    try:
        yield g
    finally:
        g.cleanup()


def revoked_after(group: Group, worker: str, t: float) -> set[int]:
    return {
        q for e in group.events(worker) if e["ev"] == "revoked" and e["t"] >= t for q in e["parts"]
    }


def moved(before: Settled, after: Settled) -> set[int]:
    was = {q: w for w, ps in before.owners.items() for q in ps}
    return {q for w, ps in after.owners.items() for q in ps if was.get(q) not in (None, w)}


@pytest.mark.broker
@pytest.mark.slow
def test_a_join_and_a_death_move_only_what_balance_needs(group: Group) -> None:
    s1 = start_three(group)  # 6 partitions, 2 each
    t = time.monotonic()
    group.spawn("w4")
    s2 = group.wait_settled(["w1", "w2", "w3", "w4"], after=t)
    assert sorted(len(ps) for ps in s2.owners.values()) == [1, 1, 2, 2]
    # Quotas 2, 2, 1, 1: the new member's one partition comes from one owner, nothing else moves.
    assert len(moved(s1, s2)) == 1, (s1.owners, s2.owners)
    for w in ("w1", "w2", "w3"):
        stayed = set(s1.owners[w]) & set(s2.owners[w])
        assert not stayed & revoked_after(group, w, t), f"{w} had a staying partition revoked"
        assert revoked_after(group, w, t) <= set(s1.owners[w]) - set(s2.owners[w])
    # A death: only the dead member's partitions move, survivors keep theirs.
    t = group.kill("w4")
    s3 = group.wait_settled(["w1", "w2", "w3"], after=t)
    assert moved(s2, s3) == set(s2.owners["w4"])
    for w in ("w1", "w2", "w3"):
        assert set(s2.owners[w]) <= set(s3.owners[w])
        assert not revoked_after(group, w, t)
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_a_leave_moves_only_the_leavers_partitions(group: Group) -> None:
    s1 = start_three(group)
    t = time.monotonic()
    group.terminate("w2")
    s2 = group.wait_settled(["w1", "w3"], after=t)
    assert moved(s1, s2) == set(s1.owners["w2"])
    assert not revoked_after(group, "w1", t) and not revoked_after(group, "w3", t)
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_static_member_gets_its_partitions_back_within_the_delay(
    group: Group, broker_kind: str
) -> None:
    if broker_kind == "tansu":
        # Broker fact (measured here, Tansu 0.6, 3 of 5 runs): after a static member restarts
        # under a new member id, Tansu may name the dead member id the leader of a rebalance
        # that never completes (SyncGroup answers REBALANCE_IN_PROGRESS for good), and a dead
        # static member is not always expired. Static membership is not usable on Tansu.
        pytest.skip("Tansu's static membership stalls after a static member restarts")
    delay_ms = 8000
    static = ("--delay-ms", str(delay_ms))
    for w in ("w1", "w2", "w3"):
        group.spawn(w, "--instance-id", f"i-{w}", *static)
    s1 = group.wait_settled(["w1", "w2", "w3"])
    mine = s1.owners["w2"]
    # Killed, and back after the broker expired its session but within the delay.
    t = group.kill("w2")
    wait_for(
        lambda: time.monotonic() > t + SESSION_MS / 1000 + 1.0,
        SESSION_MS / 1000 + 5,
        lambda: "the session to expire",
    )
    assert group.holding("w1") is not None and group.holding("w3") is not None
    group.spawn("w2", "--instance-id", "i-w2", *static)
    s2 = group.wait_settled(["w1", "w2", "w3"], after=t)
    assert s2.owners["w2"] == mine, (s1.owners, s2.owners)
    assert moved(s1, s2) == set()
    # Killed again and not back: the others take its partitions once the delay is over.
    t = group.kill("w2")
    s3 = group.wait_settled(["w1", "w3"], after=t, timeout=60 + delay_ms / 1000)
    assert s3.at - t >= delay_ms / 1000, f"moved after {s3.at - t:.1f}s, before the delay"
    assert moved(s2, s3) == set(mine)
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_a_group_with_an_eager_member_never_overlaps(group: Group) -> None:
    """A rolling change: an eager member among cooperative ones makes generations eager (the
    leader records it); nobody owns a partition another still holds at any time."""
    group.spawn("w1")
    group.spawn("w2")
    group.wait_settled(["w1", "w2"])
    t = time.monotonic()
    group.spawn("w3", "--protocol", "eager")
    group.wait_settled(["w1", "w2", "w3"], after=t)
    logs = "".join((group.tmp / f"{w}.log").read_text() for w in ("w1", "w2", "w3"))
    assert "(eager) committed" in logs, "the leader must record the group's generation as eager"
    t = time.monotonic()
    group.spawn("w4")
    group.wait_settled(["w1", "w2", "w3", "w4"], after=t)
    t = time.monotonic()
    group.terminate("w3")
    group.wait_settled(["w1", "w2", "w4"], after=t)
    group.assert_invariants()
