"""Redis restarted under syncing clients: they serve their last copy, stale, then resync.

Each test starts its OWN redis-server on a free port so it can kill and restart it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ringleader.registry.backend import RegistryBackend
from ringleader.registry.client import RegistryClient, SyncPath
from ringleader.registry.lease import LeaseKeeper
from ringleader.registry.model import Instance, Status
from tests.registry.registry_testkit import OwnRedis, assert_same_copy, start_own_redis

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _backend(server: OwnRedis, prefix: str) -> RegistryBackend:
    r: redis.Redis[bytes] = redis.Redis.from_url(
        server.url, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    return RegistryBackend(r, prefix, log_size=50)


def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    try:
        server = start_own_redis(tmp_path / "redis", persist=False)
    except RuntimeError as e:
        pytest.fail(str(e))
    yield server
    server.kill()


def test_restart_without_persistence(own_redis: OwnRedis, unique_name: str) -> None:
    backend = _backend(own_redis, unique_name)
    client = RegistryClient(backend)
    keepers = [
        LeaseKeeper(backend, Instance("svc", f"w{n}", f"h{n}:1"), clock=lambda: 100.0)
        for n in range(20)
    ]
    for k in keepers:
        k.tick()  # renew fails (not registered) -> registers
    assert client.sync().path is SyncPath.FULL
    backend.set_status("svc", "w3", Status.DOWN)
    assert client.sync().path is SyncPath.DELTA
    assert_same_copy(client, backend)
    before = client.as_dict()
    hc = client.hashcode

    own_redis.kill()
    r = client.sync()
    assert r.path is SyncPath.FAILED and client.stale
    assert client.as_dict() == before and client.hashcode == hc  # last copy still served
    assert len(client.up("svc")) == 19
    assert not keepers[0].tick()  # renewals fail while Redis is down

    own_redis.start()  # empty: the data is gone, a new history begins
    r = client.sync()
    assert r.path is SyncPath.FULL and r.reason in ("epoch", "rewound"), r
    assert not client.stale
    assert_same_copy(client, backend)
    assert client.instances() == []  # the truth: Redis lost everything
    for k in keepers:
        assert k.tick()  # renew answers "not registered" -> register again
    r = client.sync()
    # the copy was of the empty history (seq 0), which every new history starts from
    assert (r.path, r.applied) == (SyncPath.DELTA, 20), r
    assert_same_copy(client, backend)
    assert len(client.instances()) == 20


def test_restart_with_persistence_resumes_by_delta(tmp_path: Path, unique_name: str) -> None:
    server = start_own_redis(tmp_path / "redis", persist=True)
    try:
        backend = _backend(server, unique_name)
        client = RegistryClient(backend)
        for n in range(20):
            backend.register(Instance("svc", f"w{n}", "h"), 0.0)
        client.sync()
        server.kill()
        assert client.sync().path is SyncPath.FAILED
        server.start()  # AOF fsync'd on every write: the same history
        assert client.sync().path is SyncPath.UNCHANGED
        backend.cancel("svc", "w0")
        r = client.sync()
        assert (r.path, r.applied) == (SyncPath.DELTA, 1)
        assert_same_copy(client, backend)
    finally:
        server.kill()


def test_restart_during_background_sync_and_writes(own_redis: OwnRedis, unique_name: str) -> None:
    backend = _backend(own_redis, unique_name)
    client = RegistryClient(backend)
    published: list[tuple[bool, int]] = []
    client.watch(lambda ev: published.append((client.stale, client.seq)))
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        n = 0
        while not stop.is_set():
            try:
                backend.register(Instance("svc", f"w{n % 30}", f"h{n}"), 0.0)
                writes += 1
            except redis.RedisError:
                time.sleep(0.02)
            n += 1

    t = threading.Thread(target=writer)
    t.start()
    client.start(interval=0.01)
    try:
        _wait(lambda: writes > 100 and not client.stale and client.seq > 50, 20, "first syncs")
        own_redis.kill()
        _wait(lambda: client.stale, 10, "client to notice the outage")
        frozen = client.as_dict()
        time.sleep(0.2)
        assert client.as_dict() == frozen  # no sync published anything while down
        own_redis.start()
        _wait(lambda: not client.stale, 20, "client to resync")
        w = writes
        _wait(lambda: writes > w + 50, 20, "writes after the restart")
    finally:
        stop.set()
        t.join()
    # quiesce: one more sync after the last write, then the copies must be equal
    client.stop()
    client.sync()
    assert_same_copy(client, backend)
    assert published  # watchers saw the changes


def test_new_history_reaching_the_same_seq_is_not_mistaken(
    own_redis: OwnRedis, unique_name: str
) -> None:
    backend = _backend(own_redis, unique_name)
    client = RegistryClient(backend)
    for n in range(10):
        backend.register(Instance("svc", f"w{n}", "old:1"), 0.0)
    client.sync()
    seq = client.seq
    own_redis.kill()
    own_redis.start()
    for n in range(10):  # a different history with exactly as many changes
        backend.register(Instance("svc", f"w{n}", "new:2"), 0.0)
    assert backend.snapshot().seq == seq
    r = client.sync()
    assert (r.path, r.reason) == (SyncPath.FULL, "epoch")
    assert {i.address for i in client.instances()} == {"new:2"}
    assert_same_copy(client, backend)
