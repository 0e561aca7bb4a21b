"""coordinator.wire against real brokers (Apache Kafka and Tansu)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kafka.protocol.consumer.group import (
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    SyncGroupRequest,
)

from ringleader.coordinator.connection import Connection, find_coordinator
from ringleader.coordinator.errors import BrokerUnavailableError, ErrorCode
from ringleader.coordinator.groupapi import JoinResult
from ringleader.coordinator.topics import ensure_topic
from ringleader.coordinator.wire import GroupClient

pytestmark = pytest.mark.broker

SESSION_MS = 6000
REBALANCE_MS = 10000


def join_until_member(client: GroupClient, member_id: str = "", meta: bytes = b"m") -> JoinResult:
    """JoinGroup including the MEMBER_ID_REQUIRED handshake."""
    for _ in range(5):
        r = client.join_group(
            member_id=member_id,
            group_instance_id=None,
            session_timeout_ms=SESSION_MS,
            rebalance_timeout_ms=REBALANCE_MS,
            protocols=[("roundrobin", meta)],
            timeout=30,
        )
        if r.error == ErrorCode.MEMBER_ID_REQUIRED:
            assert r.member_id
            member_id = r.member_id
            continue
        return r
    raise AssertionError("JoinGroup never settled")


def connected(broker: str, group: str) -> GroupClient:
    c = GroupClient(broker, group)
    c.find_coordinator(timeout=20)
    return c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_versions_negotiated(broker: str) -> None:
    host, port = broker.rsplit(":", 1)
    conn = Connection(host, int(port))
    try:
        versions = conn.api_versions()
        for api in (JoinGroupRequest, SyncGroupRequest, HeartbeatRequest, LeaveGroupRequest):
            assert api.API_KEY in versions
            v = conn.version_for(api)
            assert versions[api.API_KEY][0] <= v <= versions[api.API_KEY][1]
        assert conn.version_for(JoinGroupRequest) >= 4  # member-id handshake
    finally:
        conn.close()


def test_unreachable_bootstrap_lists_addresses(broker: str) -> None:
    p1, p2 = free_port(), free_port()
    with pytest.raises(BrokerUnavailableError) as e:
        find_coordinator(f"127.0.0.1:{p1},127.0.0.1:{p2}", "g", timeout=1.0)
    assert f"127.0.0.1:{p1}" in str(e.value) and f"127.0.0.1:{p2}" in str(e.value)


def test_join_sync_heartbeat_leave(broker: str, broker_kind: str, unique_name: str) -> None:
    c = connected(broker, unique_name)
    try:
        first = c.join_group(
            member_id="",
            group_instance_id=None,
            session_timeout_ms=SESSION_MS,
            rebalance_timeout_ms=REBALANCE_MS,
            protocols=[("roundrobin", b"meta")],
            timeout=30,
        )
        # Both brokers insist on the member-id handshake (JoinGroup v4+).
        assert first.error == ErrorCode.MEMBER_ID_REQUIRED and first.member_id
        r = join_until_member(c, first.member_id, b"meta")
        assert r.error == ErrorCode.NONE
        assert r.leader == r.member_id == first.member_id
        assert r.generation >= 0
        assert [(m.member_id, m.metadata) for m in r.members] == [(r.member_id, b"meta")]
        s = c.sync_group(
            generation=r.generation,
            member_id=r.member_id,
            group_instance_id=None,
            protocol_name=r.protocol_name,
            assignments={r.member_id: b"pointer"},
            timeout=20,
        )
        assert s.error == ErrorCode.NONE and s.assignment == b"pointer"
        hb = c.heartbeat(
            generation=r.generation, member_id=r.member_id, group_instance_id=None, timeout=5
        )
        assert hb == ErrorCode.NONE
        stale = c.heartbeat(
            generation=r.generation - 1, member_id=r.member_id, group_instance_id=None, timeout=5
        )
        # Broker fact: Tansu answers a stale generation with REBALANCE_IN_PROGRESS.
        expected = (
            ErrorCode.ILLEGAL_GENERATION
            if broker_kind == "kafka"
            else ErrorCode.REBALANCE_IN_PROGRESS
        )
        assert stale == expected
        unknown = c.heartbeat(
            generation=r.generation, member_id="nobody", group_instance_id=None, timeout=5
        )
        assert unknown == ErrorCode.UNKNOWN_MEMBER_ID
        assert (
            c.leave_group(member_id=r.member_id, group_instance_id=None, timeout=5)
            == ErrorCode.NONE
        )
        after = c.heartbeat(
            generation=r.generation, member_id=r.member_id, group_instance_id=None, timeout=5
        )
        assert after == ErrorCode.UNKNOWN_MEMBER_ID
    finally:
        c.close()


def sync(c: GroupClient, r: JoinResult, assignments: dict[str, bytes]) -> None:
    res = c.sync_group(
        generation=r.generation,
        member_id=r.member_id,
        group_instance_id=None,
        protocol_name=r.protocol_name,
        assignments=assignments,
        timeout=30,
    )
    assert res.error == ErrorCode.NONE, res


def test_offset_commit_fencing(broker: str, broker_kind: str, unique_name: str) -> None:
    """DESIGN's question, answered by this test:

    * a member that is no longer in the group (left, expired, never joined) is refused with
      UNKNOWN_MEMBER_ID by Apache Kafka and by Tansu;
    * in a stable group, a member committing with an older generation is refused with
      ILLEGAL_GENERATION by both;
    * while a rebalance is completing (joined, SyncGroup not yet done), Apache Kafka still
      refuses the old generation (ILLEGAL_GENERATION) but Tansu ACCEPTS it (and even -1).
      So on Tansu a stale member's commit can land during a rebalance: members must stop
      committing before they rejoin (revoke-before-rejoin does that).
    """
    topic = unique_name
    ensure_topic(broker, topic, partitions=2)
    a = connected(broker, unique_name)
    b = connected(broker, unique_name)

    def commit(gen: int, member: str, offset: int) -> ErrorCode:
        res = a.commit_offsets(
            generation=gen,
            member_id=member,
            group_instance_id=None,
            topic=topic,
            offsets={0: offset},
            timeout=5,
        )
        return res[0]

    try:
        ra = join_until_member(a)
        assert ra.error == ErrorCode.NONE
        sync(a, ra, {ra.member_id: b"x"})
        assert commit(ra.generation, ra.member_id, 5) == ErrorCode.NONE

        # B joins; A learns of the rebalance from its heartbeat and rejoins (the protocol).
        results: dict[str, JoinResult] = {}
        t = threading.Thread(target=lambda: results.setdefault("b", join_until_member(b)))
        t.start()
        deadline = time.monotonic() + 30
        while True:
            hb = a.heartbeat(
                generation=ra.generation, member_id=ra.member_id, group_instance_id=None, timeout=5
            )
            if hb == ErrorCode.REBALANCE_IN_PROGRESS:
                break
            assert hb == ErrorCode.NONE and time.monotonic() < deadline
            time.sleep(0.2)
        na = join_until_member(a, ra.member_id)
        t.join(60)
        rb = results["b"]
        assert na.error == rb.error == ErrorCode.NONE
        assert na.generation == rb.generation > ra.generation
        # The rebalance is completing: nobody has synced yet.
        during = commit(ra.generation, na.member_id, 50)
        if broker_kind == "kafka":
            assert during == ErrorCode.ILLEGAL_GENERATION
        else:
            assert during == ErrorCode.NONE  # Tansu accepts the old generation here
        leader, follower = (a, b) if na.leader == na.member_id else (b, a)
        lr = na if leader is a else rb
        fr = rb if leader is a else na
        done = threading.Thread(target=sync, args=(follower, fr, {}))
        done.start()
        sync(leader, lr, {na.member_id: b"x", rb.member_id: b"y"})
        done.join(30)

        assert commit(na.generation, na.member_id, 6) == ErrorCode.NONE
        assert commit(ra.generation, na.member_id, 99) == ErrorCode.ILLEGAL_GENERATION
        assert commit(na.generation, "zombie", 98) == ErrorCode.UNKNOWN_MEMBER_ID
        assert commit(-1, "", 97) != ErrorCode.NONE  # unfenced commit into a live group

        assert a.leave_group(member_id=na.member_id, group_instance_id=None, timeout=5) == (
            ErrorCode.NONE
        )
        assert commit(na.generation, na.member_id, 96) == ErrorCode.UNKNOWN_MEMBER_ID
        assert a.fetch_offsets(topic=topic, partitions=[0], timeout=5)[0].offset == 6
    finally:
        a.close()
        b.close()


def test_abort_unblocks_a_held_join(broker: str, unique_name: str) -> None:
    """A JoinGroup the broker holds can be abandoned from another thread (close())."""
    a = connected(broker, unique_name)
    b = connected(broker, unique_name)
    try:
        ra = join_until_member(a)
        assert ra.error == ErrorCode.NONE
        # B's join is held: A has not rejoined the new rebalance.
        errors: list[BaseException] = []

        def join_b() -> None:
            try:
                join_until_member(b)
            except BrokerUnavailableError as e:
                errors.append(e)

        t = threading.Thread(target=join_b)
        started = time.monotonic()
        t.start()
        while t.is_alive() and time.monotonic() - started < 5:
            b.abort()
            t.join(0.1)
        assert not t.is_alive()
        assert errors, "the held JoinGroup should have been interrupted"
    finally:
        a.close()
        b.close()


def test_rejoin_with_unchanged_membership_generation(
    broker: str, broker_kind: str, unique_name: str
) -> None:
    """Broker fact: Apache Kafka bumps the generation on every rebalance; Tansu keeps the
    same generation when a lone member rejoins. Generation numbers can repeat on Tansu, so
    the assignment log must let a later commit of the same generation win."""
    c = connected(broker, unique_name)
    try:
        r1 = join_until_member(c)
        sync(c, r1, {r1.member_id: b"x"})
        r2 = join_until_member(c, r1.member_id)
        assert r2.error == ErrorCode.NONE and r2.member_id == r1.member_id
        if broker_kind == "kafka":
            assert r2.generation == r1.generation + 1
        else:
            assert r2.generation == r1.generation
    finally:
        c.close()
