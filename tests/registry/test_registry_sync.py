"""Clients keep an exact copy by deltas, checked by the hashcode; full fetch on gaps/mismatch."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringleader.registry import hashcode
from ringleader.registry.backend import RegistryBackend
from ringleader.registry.client import RegistryClient, RegistryEvent, SyncPath
from ringleader.registry.model import Instance, Metadata, Status
from tests.registry.registry_testkit import assert_same_copy

pytestmark = pytest.mark.redis


@pytest.fixture
def rconn(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    yield r
    r.close()


# -- property test -------------------------------------------------------------------------

IDS = [f"i{n}" for n in range(5)]


@dataclass(frozen=True)
class Op:
    kind: str  # register | renew | status | cancel | expire | sync
    iid: str
    status: Status
    variant: int
    advance: float


ops = st.builds(
    Op,
    kind=st.sampled_from(["register", "renew", "status", "cancel", "expire", "sync", "sync"]),
    iid=st.sampled_from(IDS),
    status=st.sampled_from(Status),
    variant=st.integers(0, 2),
    advance=st.sampled_from([0.0, 1.0, 5.0, 20.0]),
)

_counter = itertools.count()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(ops, min_size=1, max_size=40), log_size=st.sampled_from([1, 3, 8]))
def test_client_copy_equals_server_by_delta_or_full_fetch(
    rconn: redis.Redis[bytes], unique_name: str, steps: list[Op], log_size: int
) -> None:
    prefix = f"{unique_name}-{next(_counter)}"
    # min_leases high: this test is about expiry, not self-preservation
    backend = RegistryBackend(rconn, prefix, log_size=log_size, self_preservation_min_leases=10**6)
    client = RegistryClient(backend)
    now = 1_000.0
    paths: list[SyncPath] = []
    try:
        first = client.sync()
        assert first.path is SyncPath.FULL and first.reason == "initial"
        for op in [*steps, Op("sync", "", Status.UP, 0, 0.0)]:
            now += op.advance
            if op.kind == "register":
                inst = Instance(
                    "svc",
                    op.iid,
                    f"10.0.0.{op.variant}:80",
                    op.status,
                    Metadata.of({"v": str(op.variant)}),
                    lease_duration=10.0,
                )
                backend.register(inst, now)
            elif op.kind == "renew":
                backend.renew("svc", op.iid, now)
            elif op.kind == "status":
                if backend.get("svc", op.iid) is not None:
                    backend.set_status("svc", op.iid, op.status)
            elif op.kind == "cancel":
                backend.cancel("svc", op.iid)
            elif op.kind == "expire":
                backend.evict(now)
            else:
                behind = backend.snapshot().seq - client.seq
                result = client.sync()
                paths.append(result.path)
                if behind == 0:
                    assert result.path is SyncPath.UNCHANGED
                elif behind <= log_size:
                    # the log still covers every change: deltas alone must do
                    assert result.path is SyncPath.DELTA, result
                    assert result.applied == behind
                else:
                    assert result.path is SyncPath.FULL and result.reason == "gap", result
                assert_same_copy(client, backend)
    finally:
        backend.drop()


# -- churn among 1,000 instances -----------------------------------------------------------


def test_thousand_instances_with_churn_sync_by_deltas(
    rconn: redis.Redis[bytes], unique_name: str
) -> None:
    rnd = random.Random(5)
    backend = RegistryBackend(rconn, unique_name, log_size=500)
    client = RegistryClient(backend)
    now = 10_000.0
    live = {}
    try:
        for n in range(1000):
            inst = Instance("svc" + str(n % 7), f"w{n}", f"10.1.{n // 250}.{n % 250}:80")
            backend.register(inst, now)
            live[inst.key] = inst
        assert client.sync().path is SyncPath.FULL
        assert_same_copy(client, backend)
        for _round in range(10):
            for _ in range(40):
                inst = live[rnd.choice(sorted(live))]
                action = rnd.random()
                if action < 0.3:
                    backend.set_status(inst.service, inst.instance_id, rnd.choice(list(Status)))
                elif action < 0.5:
                    backend.cancel(inst.service, inst.instance_id)
                    del live[inst.key]
                    new = Instance(inst.service, inst.instance_id + "x", "10.9.9.9:80")
                    backend.register(new, now)
                    live[new.key] = new
                else:  # same status, new address: only the digest can see this
                    current = backend.get(inst.service, inst.instance_id)
                    assert current is not None
                    moved = Instance(
                        inst.service, inst.instance_id, f"10.2.{_round}.1:81", current.status
                    )
                    backend.register(moved, now)
            result = client.sync()
            assert result.path is SyncPath.DELTA, result
            assert_same_copy(client, backend)
        assert len(client.instances()) == 1000
    finally:
        backend.drop()


def test_change_keeping_status_is_caught_by_digest_not_status_count(
    rconn: redis.Redis[bytes], unique_name: str
) -> None:
    backend = RegistryBackend(rconn, unique_name)
    client = RegistryClient(backend)
    try:
        for n in range(1000):
            backend.register(Instance("svc", f"w{n}", f"h{n}:80"), 1.0)
        client.sync()
        before = client.hashcode
        # A writer whose log entry was lost (bypasses the scripts): the instance's content
        # changes, its status does not. Update content and digest, but write no log entry.
        k = backend.keys
        old = bytes(rconn.hget(k.inst, "svc/w7"))  # type: ignore[arg-type]
        new = Instance("svc", "w7", "elsewhere:80").encode()
        t_old, t_new = hashcode.term(old), hashcode.term(new)
        digest = hashcode.from_hex(rconn.get(k.digest).decode())  # type: ignore[union-attr]
        pipe = rconn.pipeline(transaction=True)
        pipe.hset(k.inst, "svc/w7", new)
        pipe.hset(k.meta, "svc/w7", f"{hashcode.to_hex(t_new)} UP 30.0")
        pipe.set(k.digest, hashcode.to_hex(hashcode.add(hashcode.sub(digest, t_old), t_new)))
        pipe.execute()

        server = backend.hashcode()
        assert server.status == before.status == "UP_1000_"  # Eureka's hashcode is blind
        assert server.digest != before.digest  # ours is not
        result = client.sync()
        assert result.path is SyncPath.FULL and result.reason == "mismatch"
        assert client.as_dict()["svc/w7"].address == "elsewhere:80"
        assert_same_copy(client, backend)
    finally:
        backend.drop()


def test_lua_digest_matches_python_digest(rconn: redis.Redis[bytes], unique_name: str) -> None:
    backend = RegistryBackend(rconn, unique_name)
    rnd = random.Random(1)
    try:
        for n in range(200):
            backend.register(Instance("a", f"i{n}", "x", rnd.choice(list(Status))), 0.0)
        for n in range(0, 200, 3):
            backend.cancel("a", f"i{n}")
        snap = backend.snapshot()
        expected = hashcode.hashcode_of(
            (Instance.decode(v).status.value, v) for v in snap.instances.values()
        )
        assert snap.hashcode == expected
    finally:
        backend.drop()


def test_watch_callbacks_report_changes(rconn: redis.Redis[bytes], unique_name: str) -> None:
    backend = RegistryBackend(rconn, unique_name)
    client = RegistryClient(backend)
    events: list[RegistryEvent] = []
    unsubscribe = client.watch(events.append)
    try:
        backend.register(Instance("s", "a", "h:1"), 0.0)
        client.sync()
        assert [i.instance_id for i in events[-1].added] == ["a"]
        backend.register(Instance("s", "b", "h:2"), 0.0)
        backend.set_status("s", "a", Status.DOWN)
        client.sync()
        ev = events[-1]
        assert ev.path is SyncPath.DELTA
        assert [i.instance_id for i in ev.added] == ["b"]
        assert [(i.instance_id, i.status) for i in ev.updated] == [("a", Status.DOWN)]
        backend.cancel("s", "b")
        n = len(events)
        assert client.sync().path is SyncPath.DELTA
        assert [i.instance_id for i in events[-1].removed] == ["b"]
        assert client.sync().path is SyncPath.UNCHANGED
        assert len(events) == n + 1  # no callback when nothing changed
        unsubscribe()
        backend.cancel("s", "a")
        client.sync()
        assert len(events) == n + 1
        assert client.up("s") == []
    finally:
        backend.drop()


def test_trimmed_log_forces_full_fetch(rconn: redis.Redis[bytes], unique_name: str) -> None:
    backend = RegistryBackend(rconn, unique_name, log_size=3)
    client = RegistryClient(backend)
    try:
        client.sync()
        for n in range(3):
            backend.register(Instance("s", f"i{n}", "h"), 0.0)
        r = client.sync()
        assert (r.path, r.applied) == (SyncPath.DELTA, 3)
        for n in range(4):  # one more change than the log keeps
            backend.set_status("s", "i0", [Status.DOWN, Status.UP][n % 2])
        r = client.sync()
        assert (r.path, r.reason) == (SyncPath.FULL, "gap")
        assert_same_copy(client, backend)
    finally:
        backend.drop()
