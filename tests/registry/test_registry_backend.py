"""Backend semantics against real Redis: leases, eviction, self-preservation, atomicity."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import pytest
import redis

from ringleader.errors import RedisUnavailableError, RingleaderError
from ringleader.registry import hashcode
from ringleader.registry.backend import RegistryBackend
from ringleader.registry.errors import InstanceNotFound, RegistryError, RegistryUnavailable
from ringleader.registry.model import Instance, Status
from tests.registry.registry_testkit import server_view

pytestmark = pytest.mark.redis


@pytest.fixture
def backend(redis_url: str, unique_name: str) -> Iterator[RegistryBackend]:
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    b = RegistryBackend(
        r, unique_name, log_size=100, self_preservation_share=0.15, self_preservation_min_leases=10
    )
    yield b
    b.drop()
    r.close()


def test_keys_are_namespaced_by_prefix(backend: RegistryBackend) -> None:
    backend.register(Instance("s", "a", "h"), 0.0)
    keys = {k.decode() for k in backend.redis.scan_iter(match=f"{backend.keys.prefix}*")}
    assert keys and all(k.startswith(backend.keys.prefix + ":") for k in keys)
    assert keys <= set(backend.keys.all())


def test_lease_renew_and_eviction(backend: RegistryBackend) -> None:
    backend.register(Instance("s", "a", "h", lease_duration=10.0), 100.0)
    backend.register(Instance("s", "b", "h", lease_duration=10.0), 100.0)
    seq = backend.snapshot().seq
    assert backend.renew("s", "a", 105.0)
    lease = backend.lease("s", "a")
    assert lease is not None and lease.expires_at == 115.0 and lease.last_renewal == 105.0
    assert backend.snapshot().seq == seq  # renewals write no log entry
    assert not backend.renew("s", "nobody", 105.0)
    ev = backend.evict(112.0)  # b lapsed at 110; 1 of 2 < min_leases: no self-preservation
    assert (ev.paused, ev.evicted) == (False, 1)
    assert set(server_view(backend)) == {"s/a"}
    assert not backend.renew("s", "b", 113.0)  # evicted: owner must register again


def test_status_change_and_cancel(backend: RegistryBackend) -> None:
    backend.register(Instance("s", "a", "h:1"), 0.0)
    seq = backend.set_status("s", "a", Status.OUT_OF_SERVICE)
    assert backend.get("s", "a") == Instance("s", "a", "h:1", Status.OUT_OF_SERVICE)
    assert backend.hashcode().status == "OUT_OF_SERVICE_1_"
    delta = backend.changes_since(seq - 1)
    assert [(c.op, c.why) for c in delta.changes] == [("put", "status")]
    with pytest.raises(InstanceNotFound):
        backend.set_status("s", "zz", Status.UP)
    assert backend.cancel("s", "a")
    assert not backend.cancel("s", "a")
    assert backend.hashcode().status == ""
    assert backend.hashcode().digest == "0" * 64


def test_identical_register_only_moves_the_lease(backend: RegistryBackend) -> None:
    inst = Instance("s", "a", "h:1", lease_duration=5.0)
    s1 = backend.register(inst, 0.0)
    s2 = backend.register(inst, 3.0)
    assert s1 == s2
    assert backend.lease("s", "a").expires_at == 8.0  # type: ignore[union-attr]


def test_concurrent_status_changes_stay_consistent(backend: RegistryBackend) -> None:
    for n in range(5):
        backend.register(Instance("s", f"i{n}", "h"), 0.0)

    def flip(k: int) -> None:
        for j in range(30):
            backend.set_status("s", f"i{(k + j) % 5}", list(Status)[(k * j) % 4])

    threads = [threading.Thread(target=flip, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = backend.snapshot()
    assert snap.hashcode == hashcode.hashcode_of(
        (Instance.decode(v).status.value, v) for v in snap.instances.values()
    )
    assert backend.changes_since(snap.seq - 1).changes[-1].seq == snap.seq


def test_self_preservation_at_twenty_percent(
    backend: RegistryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(100):
        backend.register(Instance("s", f"i{n}", "h", lease_duration=30.0), 0.0)
    for n in range(80):
        backend.renew("s", f"i{n}", 20.0)  # 20 of 100 do not renew (a partition)
    caplog.set_level(logging.WARNING, logger="ringleader.registry.backend")

    ev = backend.evict(31.0)  # i80..i99 lapsed at 30: 20% > 15%
    assert ev.paused and ev.evicted == 0 and (ev.lapsed, ev.total) == (20, 100)
    assert len(server_view(backend)) == 100
    flag = backend.self_preservation()
    assert flag.paused and flag.since == 31.0 and flag.lapsed == 20
    assert "self-preservation ON" in caplog.text
    ev = backend.evict(32.0)
    assert ev.paused and ev.evicted == 0
    assert backend.self_preservation().since == 31.0  # still the original start

    # Renewals return for most of them: 5 of 100 lapsed now, under the threshold.
    for n in range(80, 95):
        assert backend.renew("s", f"i{n}", 33.0)
    caplog.clear()
    ev = backend.evict(34.0)
    assert not ev.paused and ev.evicted == 5
    assert not backend.self_preservation().paused
    assert "self-preservation OFF" in caplog.text
    assert len(server_view(backend)) == 95


def test_small_lapses_are_evicted_without_pause(backend: RegistryBackend) -> None:
    for n in range(100):
        backend.register(Instance("s", f"i{n}", "h", lease_duration=30.0), 0.0)
    for n in range(90):
        backend.renew("s", f"i{n}", 20.0)
    ev = backend.evict(31.0)  # 10% lapsed: below 15%
    assert not ev.paused and ev.evicted == 10


def test_unreachable_redis_raises_registry_unavailable() -> None:
    # Nothing listens on port 1 (a client from_url fails at once; redis-py 8's plain
    # Redis() would retry each command with backoff for seconds).
    r: redis.Redis[bytes] = redis.Redis.from_url("redis://127.0.0.1:1/0")
    b = RegistryBackend(r, "unreachable")
    calls: list[Callable[[], object]] = [
        lambda: b.register(Instance("s", "a", "h"), 0.0),
        lambda: b.renew("s", "a", 0.0),
        lambda: b.set_status("s", "a", Status.DOWN),
        b.snapshot,
        lambda: b.changes_since(0),
        lambda: b.evict(0.0),
    ]
    for call in calls:
        with pytest.raises(RegistryUnavailable) as e:
            call()
        err = e.value
        assert isinstance(err, RegistryError) and isinstance(err, RedisUnavailableError)
        assert isinstance(err, RingleaderError) and err.retriable
        assert isinstance(err.__cause__, redis.ConnectionError) and err.cause is err.__cause__
        assert "'unreachable'" in str(err)
        # callers written against redis-py's errors still catch it
        assert isinstance(err, redis.RedisError)
    r.close()
