"""Members as OS processes against real brokers: convergence, leave, join, kill, pause,
a leader dying mid-commit, and (on the three-node cluster) the coordinator dying.

Every member process (tests/coordinator/member_proc.py) writes a ledger of what it was
assigned, revoked, and would have worked on; the checks below read those ledgers.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.coordinator.member_group import (
    HEARTBEAT_MS,
    PARTITIONS,
    SESSION_MS,
    SETTLE_TIMEOUT,
    Group,
    start_three,
    wait_for,
    worker_of,
)


@pytest.fixture
def group(broker: str, unique_name: str, tmp_path: Path) -> Iterator[Group]:
    g = Group(broker, unique_name, tmp_path)
    g.create_topics()
    try:
        yield g
    finally:
        g.cleanup()


# ---- tests on Apache Kafka and Tansu -----------------------------------------------------


@pytest.mark.broker
@pytest.mark.slow
def test_three_members_converge(group: Group) -> None:
    s = start_three(group)
    assert sorted(p for ps in s.owners.values() for p in ps) == list(range(PARTITIONS))
    assert all(len(ps) == 2 for ps in s.owners.values())  # round-robin: 6 over 3
    # The generation every member applied was committed by the leader they all name.
    assigned = [e for e in group.events() if e["ev"] == "assigned" and e["gen"] == s.generation]
    assert {e["leader"] for e in assigned} == {s.leader}
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_graceful_leave_hands_over_everything(group: Group) -> None:
    s1 = start_three(group)
    leaver = "w2"
    t = time.monotonic()
    group.terminate(leaver)
    s2 = group.wait_settled(["w1", "w3"], after=t)  # every partition, held by the survivors
    ev = group.events(leaver)
    assert [e["ev"] for e in ev][-2:] == ["revoked", "closed"]
    revoked_at = ev[-2]["t"]
    assert s2.generation > s1.generation
    # The survivors' generation was applied only after the leaver had let go of its share.
    applied = [
        e["t"]
        for e in group.events()
        if e["ev"] == "assigned" and e["gen"] == s2.generation and e["leader"] == s2.leader
    ]
    assert min(applied) > revoked_at
    # LeaveGroup hands over at once: a member that died would only be noticed once its
    # session timed out, before any rebalance could even begin.
    assert s2.at - t < SESSION_MS / 1000, s2.at - t
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_new_member_gets_its_share(group: Group) -> None:
    start_three(group)
    t = time.monotonic()
    group.spawn("w4")
    s = group.wait_settled(["w1", "w2", "w3", "w4"], after=t)
    assert len(s.owners["w4"]) >= 1
    assert sorted(len(ps) for ps in s.owners.values()) == [1, 1, 2, 2]
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_killed_follower_is_replaced_after_session_timeout(group: Group) -> None:
    s1 = start_three(group)
    leader = worker_of(group, s1, s1.leader)
    victim = next(w for w in ("w1", "w2", "w3") if w != leader)
    t = group.kill(victim)
    rest = [w for w in ("w1", "w2", "w3") if w != victim]
    s2 = group.wait_settled(rest, after=t)
    took = s2.at - t
    assert took < SESSION_MS / 1000 + 15, took
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_killed_leader_is_replaced_by_a_new_leader(group: Group) -> None:
    s1 = start_three(group)
    leader = worker_of(group, s1, s1.leader)
    t = group.kill(leader)
    rest = [w for w in ("w1", "w2", "w3") if w != leader]
    s2 = group.wait_settled(rest, after=t)
    assert s2.leader != s1.leader
    assert worker_of(group, s2, s2.leader) in rest
    assert s2.at - t < SESSION_MS / 1000 + 15, s2.at - t
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_paused_member_never_overlaps_its_successor(group: Group) -> None:
    """SIGSTOP a member past its session timeout, then SIGCONT it."""
    s1 = start_three(group)
    leader = worker_of(group, s1, s1.leader)
    zombie = next(w for w in ("w1", "w2", "w3") if w != leader)
    zombie_parts = set(s1.owners[zombie])
    t_stop = group.kill(zombie, signal.SIGSTOP)
    group.procs[zombie].stopped = True
    rest = [w for w in ("w1", "w2", "w3") if w != zombie]

    # The others take over the paused member's partitions and work on them.
    def successors_working() -> bool:
        worked = {
            q
            for e in group.events()
            if e["ev"] == "work" and e["worker"] in rest and e["t"] > t_stop
            for q in e["parts"]
        }
        return zombie_parts <= worked

    wait_for(successors_working, SETTLE_TIMEOUT, lambda: f"{rest} to work {zombie_parts}")
    assert group.settled(rest) is not None
    t_cont = group.kill(zombie, signal.SIGCONT)
    group.procs[zombie].stopped = False
    s3 = group.wait_settled(["w1", "w2", "w3"], after=t_cont)
    assert zombie in s3.owners

    zev = group.events(zombie)
    fenced = [e for e in zev if e["ev"] == "fenced" and e["t"] > t_cont]
    assert fenced and not fenced[0]["fatal"], zev[-10:]
    # The paused member did no work after its lease lapsed: nothing between stop and the
    # generation it applied after resuming.
    after_stop = [e for e in zev if e["ev"] == "work" and t_stop < e["t"] < fenced[0]["t"]]
    assert not after_stop, after_stop[:3]
    # Ownership is judged by what members would have worked on: the paused member's
    # `assigned` ... `revoked` span necessarily covers the time it was stopped.
    group.assert_invariants(by_assignment=False)


@pytest.mark.broker
@pytest.mark.slow
def test_leader_dying_mid_commit_leaves_nothing_applied(group: Group) -> None:
    token = group.tmp / "crash-token"
    for w in ("w1", "w2", "w3"):
        group.spawn(w, "--crash-token", str(token))
    group.wait_settled(["w1", "w2", "w3"])
    token.write_text("crash the next leader after its parts, before its commit")
    t = time.monotonic()
    group.spawn("w4", "--crash-token", str(token))  # forces a rebalance

    def crashed() -> bool:
        return any(e["ev"] == "crash" for e in group.events())

    wait_for(crashed, SETTLE_TIMEOUT, lambda: f"a leader to crash; tail {group.events()[-8:]}")
    crash = next(e for e in group.events() if e["ev"] == "crash")
    dead = crash["worker"]
    assert group.procs[dead].popen.wait(10) == 17
    group.procs[dead].ended_at = crash["t"]
    rest = [w for w in ("w1", "w2", "w3", "w4") if w != dead]
    s = group.wait_settled(rest, after=t)
    assert s.leader != crash["member"]
    # Invariant 5: nobody applied the generation whose commit never came.
    applied_crashed = [
        e
        for e in group.events()
        if e["ev"] == "assigned" and e["gen"] == crash["gen"] and e["leader"] == crash["member"]
    ]
    assert not applied_crashed, applied_crashed
    group.assert_invariants()


@pytest.mark.broker
@pytest.mark.slow
def test_static_member_restart_gets_a_share(
    broker: str, broker_kind: str, unique_name: str, tmp_path: Path
) -> None:
    """A static member (group.instance.id) restarted under the same instance id gets a new
    member id; Kafka hands it the old id's generation without a rebalance, in which it has
    no part. It must rejoin (not sit on an empty assignment) so every partition has an
    owner again. Tansu instead rebalances. In-process members (threads) here."""
    from dataclasses import replace

    from ringleader.coordinator.member import Member
    from ringleader.coordinator.metadata import MemberMetadata
    from ringleader.coordinator.settings import MemberSettings

    g = Group(broker, unique_name, tmp_path, partitions=4)
    g.create_topics()
    base = MemberSettings(
        group_id=unique_name,
        session_timeout_ms=SESSION_MS,
        rebalance_timeout_ms=12000,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )

    def member(i: int) -> Member:
        return Member(
            broker,
            replace(base, group_instance_id=f"instance-{i}"),
            topic=g.topic,
            partitions=4,
            assignment_topic=g.assignments,
            metadata=MemberMetadata(worker_id=f"w{i}"),
            on_assigned=lambda gen, parts: None,
            on_revoked=lambda parts: None,
        )

    def complete(ms: list[Member]) -> bool:
        gens = {m.generation for m in ms}
        return (
            len(gens) == 1
            and -1 not in gens
            and sorted(p for m in ms for p in m.assigned) == [0, 1, 2, 3]
        )

    a, b = member(0), member(1)
    b2: Member | None = None
    try:
        a.start()
        b.start()
        wait_for(lambda: complete([a, b]), SETTLE_TIMEOUT, lambda: "static members to settle")
        old_id = b.member_id
        b.close()  # static: no LeaveGroup
        b2 = member(1)
        b2.start()
        wait_for(
            lambda: b2 is not None and complete([a, b2]),
            SETTLE_TIMEOUT,
            lambda: f"restarted static member to get a share: {a.assigned} / {b2 and b2.assigned}",
        )
        # Broker fact: Kafka gives the restarted static member a new member id; Tansu
        # derives it from the instance id and gives the same one back.
        assert (b2.member_id != old_id) == (broker_kind == "kafka")
        assert a.fatal_error is None and b2.fatal_error is None
    finally:
        a.close()
        if b2 is not None:
            b2.close()


# ---- three-node cluster ----------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.slow
def test_coordinator_node_dies(kafka_cluster: Any, unique_name: str, tmp_path: Path) -> None:
    from ringleader.coordinator.connection import find_coordinator
    from ringleader.local import services

    g = Group(kafka_cluster.bootstrap, unique_name, tmp_path)
    g.create_topics(replication=3)
    workers = ["w1", "w2", "w3"]
    killed: int | None = None
    try:
        start_three(g)
        coord = find_coordinator(kafka_cluster.bootstrap, g.name, timeout=30)
        node = next(n for n in kafka_cluster.nodes if n.node_id == coord.node_id)
        t = time.monotonic()
        services.stop_service(kafka_cluster, node.name)
        killed = coord.node_id

        # Every member finds the new coordinator, and keeps (or regains) a complete
        # assignment it can work on: work lines more than a session after the kill prove
        # its heartbeats to the new coordinator succeed (the lease only grows with them).
        def recovered() -> bool:
            evs = [e for e in g.events() if e["t"] > t]
            for w in workers:
                moved = [e for e in evs if e["worker"] == w and e["ev"] == "coordinator"]
                if not moved or moved[-1]["node"] == killed:
                    return False
                late = [
                    e
                    for e in evs
                    if e["worker"] == w and e["ev"] == "work" and e["t"] > t + SESSION_MS / 1000
                ]
                if not late:
                    return False
            return g.settled(workers) is not None

        wait_for(recovered, 120, lambda: f"recovery from node {killed}; {g.events()[-9:]}")
        s = g.settled(workers)
        assert s is not None
        assert sorted(p for ps in s.owners.values() for p in ps) == list(range(PARTITIONS))
        moved = find_coordinator(kafka_cluster.bootstrap, g.name, timeout=30)
        assert moved.node_id != killed
        g.assert_invariants()
    finally:
        g.cleanup()
        if killed is not None:
            services.restart_kafka_node(kafka_cluster, killed)
