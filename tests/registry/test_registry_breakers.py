"""Breakers (pure, injected time) and circuit-broken calls to a real local HTTP service."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterator

import pytest
import redis

from ringleader.chaos.stub import FlakyHTTP, http_get, serving
from ringleader.registry.backend import RegistryBackend
from ringleader.registry.breakers import (
    Breaker,
    BreakerBoard,
    BreakerOpen,
    BreakerSettings,
    BreakerState,
    Permit,
    memory_storage,
    redis_storage,
)
from ringleader.registry.client import RegistryClient
from ringleader.registry.downstream import (
    Backoff,
    Downstream,
    DownstreamError,
    RetryPolicy,
    breaker_rows,
)
from ringleader.registry.errors import NoInstances, ServiceUnavailable
from ringleader.registry.model import Instance, Status

# -- the breaker alone ---------------------------------------------------------------------


def _breaker(**kw: float) -> Breaker:
    s = BreakerSettings(fail_max=3, reset_timeout=10.0, **kw)  # type: ignore[arg-type]
    return Breaker("b", s, memory_storage("b"))


def test_breaker_opens_half_opens_and_closes() -> None:
    b = _breaker()
    changes: list[tuple[BreakerState, BreakerState]] = []
    b._listeners.append(lambda n, old, new: changes.append((old, new)))
    for t in (1.0, 2.0):
        b.failure(b.admit(t), t)
    b.success(b.admit(2.5), 2.5)  # consecutive failures reset by a success
    for t in (3.0, 4.0, 5.0):
        b.failure(b.admit(t), t)
    assert b.status("s", "").state is BreakerState.OPEN
    with pytest.raises(BreakerOpen) as e:
        b.admit(14.9)
    assert e.value.retry_at == 15.0
    trial = b.admit(15.0)
    assert trial.trial
    with pytest.raises(BreakerOpen):  # only one trial at a time
        b.admit(15.1)
    b.success(trial, 15.2)
    assert b.status("s", "").state is BreakerState.CLOSED
    assert changes == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]


def test_failed_trial_reopens() -> None:
    b = _breaker()
    for t in (1.0, 2.0, 3.0):
        b.failure(b.admit(t), t)
    b.failure(b.admit(13.0), 13.5)
    st = b.status("s", "")
    assert st.state is BreakerState.OPEN and st.retry_at == 23.5


def test_half_open_admits_its_trials_among_concurrent_callers() -> None:
    """The lock covers only the decisions, so callers racing at the half-open moment each
    get an answer at once, and exactly `half_open_max_calls` of them are let through (the
    rest are turned away with a retry time) while the trials are in flight."""
    b = _breaker(half_open_max_calls=2)
    for t in (1.0, 2.0, 3.0):
        b.failure(b.admit(t), t)  # open until 13.0
    callers = 16
    start = threading.Barrier(callers)
    permits: list[Permit] = []
    refused: list[float] = []
    guard = threading.Lock()

    def caller() -> None:
        start.wait()
        try:
            p = b.admit(13.0)
        except BreakerOpen as e:
            with guard:
                refused.append(e.retry_at)
            return
        with guard:
            permits.append(p)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert not any(th.is_alive() for th in threads)
    assert len(permits) == 2 and len(refused) == callers - 2
    assert set(refused) == {13.0 + b.settings.trial_wait}
    assert b.status("s", "").state is BreakerState.HALF_OPEN
    b.success(permits[0], 13.1)  # success_threshold 1: closes
    b.failure(permits[1], 13.2)  # the other trial fails late: one failure of a closed breaker
    st = b.status("s", "")
    assert (st.state, st.failures) == (BreakerState.CLOSED, 1)
    assert not b.admit(13.3).trial


class _Fixed:
    """An InstanceSource with a fixed list of UP instances (no Redis)."""

    def __init__(self, *ids: str) -> None:
        self.instances = [Instance("svc", i, f"{i}:1") for i in ids]

    def up(self, service: str) -> list[Instance]:
        return list(self.instances)


def test_downstream_retries_by_the_policy_with_its_seeded_jitter() -> None:
    policy = RetryPolicy(max_retries=3, backoff=Backoff(initial=0.1, maximum=1.0, jitter=0.05))
    slept: list[float] = []
    calls: list[str] = []

    def flaky(inst: Instance) -> str:
        calls.append(inst.instance_id)
        if len(calls) < 4:
            raise ConnectionError("refused")
        return "ok"

    lots = BreakerSettings(fail_max=100)
    ds = Downstream(
        _Fixed("a"), BreakerBoard(lots, lots), policy, sleep=slept.append, rng=random.Random(7)
    )
    assert ds.call("svc", flaky) == "ok" and len(calls) == 4
    rng = random.Random(7)
    assert slept == [policy.backoff.delay(n, rng) for n in (1, 2, 3)]

    def down(inst: Instance) -> str:
        calls.append(inst.instance_id)
        raise ConnectionError("refused")

    def refused(inst: Instance) -> str:
        calls.append(inst.instance_id)
        raise DownstreamError("400 bad request", retriable=False)

    calls.clear()
    with pytest.raises(ConnectionError):  # retries spent: the last error propagates
        ds.call("svc", down)
    assert len(calls) == policy.attempts
    calls.clear()
    with pytest.raises(DownstreamError):  # not retriable: one call, no sleep
        ds.call("svc", refused)
    assert calls == ["a"]


# -- a real HTTP downstream ----------------------------------------------------------------


@pytest.fixture
def http_service() -> Iterator[FlakyHTTP]:
    with serving() as srv:
        yield srv


@pytest.fixture
def registry(redis_url: str, unique_name: str) -> Iterator[tuple[RegistryBackend, RegistryClient]]:
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    b = RegistryBackend(r, unique_name)
    yield b, RegistryClient(b)
    b.drop()
    r.close()


@pytest.mark.redis
def test_outage_parks_tasks_and_every_task_completes(
    http_service: FlakyHTTP, registry: tuple[RegistryBackend, RegistryClient]
) -> None:
    backend, client = registry
    backend.register(Instance("echo", "e1", http_service.address), time.time())
    client.sync()
    fast = BreakerSettings(fail_max=3, reset_timeout=0.5)
    retry = RetryPolicy(max_retries=2, backoff=Backoff(initial=0.01, jitter=0.01))
    ds = Downstream(client, BreakerBoard(fast, fast), retry)
    closed = threading.Event()
    ds.subscribe(lambda n, old, new: closed.set() if (n, new) == ("echo", "closed") else None)

    # A worker's queues, in miniature: active, unschedulable (parked), dead letters.
    budget = 2
    active = deque(range(20))
    parked: list[tuple[float, int]] = []
    spent = dict.fromkeys(active, 0)
    completed: set[int] = set()
    dead: list[int] = []
    unavailable = 0
    http_service.failing = True
    deadline = time.monotonic() + 60
    while len(completed) + len(dead) < 20:
        assert time.monotonic() < deadline, "tasks did not finish"
        now = time.time()
        for item in [p for p in parked if p[0] <= now]:
            parked.remove(item)
            active.append(item[1])
        if not active:
            time.sleep(max(0.0, min(p[0] for p in parked) - now))
            continue
        task = active.popleft()
        hits_before = http_service.hits
        try:
            assert ds.call("echo", http_get("/")) == "ok"
            completed.add(task)
        except ServiceUnavailable as e:
            unavailable += 1
            parked.append((e.retry_at, task))  # no budget spent
            if unavailable > 1:
                assert http_service.hits == hits_before  # turned away without a call
            assert not ds.available("echo")
            http_service.failing = False  # the downstream recovers while tasks wait
        except DownstreamError:
            spent[task] += 1
            (dead if spent[task] > budget else active).append(task)

    assert completed == set(range(20)) and dead == []
    assert all(n == 0 for n in spent.values()), spent
    assert http_service.failed_hits == 3  # fail_max: then the breaker stopped the calls
    assert unavailable >= 1 and closed.is_set()
    assert ds.available("echo")
    rows = breaker_rows(ds.breaker_states())
    assert ("echo", "", "closed", 0) in rows and ("echo", "e1", "closed", 0) in rows


@pytest.mark.redis
def test_concurrent_calls_through_one_breaker_are_not_serialized(
    http_service: FlakyHTTP, registry: tuple[RegistryBackend, RegistryClient]
) -> None:
    backend, client = registry
    backend.register(Instance("slow", "s1", http_service.address), time.time())
    client.sync()
    ds = Downstream(client)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(ds.call("slow", http_get("/slow"))))
        for _ in range(8)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert results == ["ok"] * 8
    assert elapsed < 2.5, f"8 x 0.5 s calls took {elapsed:.2f} s: serialized would be >= 4 s"


@pytest.mark.redis
def test_round_robin_skips_down_and_broken_instances(
    http_service: FlakyHTTP, registry: tuple[RegistryBackend, RegistryClient]
) -> None:
    backend, client = registry
    for n in range(4):
        backend.register(Instance("rr", f"i{n}", http_service.address), time.time())
    backend.set_status("rr", "i3", Status.DOWN)
    client.sync()
    one_strike = BreakerSettings(fail_max=1, reset_timeout=600.0)
    ds = Downstream(
        client,
        BreakerBoard(BreakerSettings(fail_max=100), one_strike),
        RetryPolicy(max_retries=1, backoff=Backoff(initial=0, jitter=0)),
        sleep=lambda _: None,
    )
    tried: list[str] = []

    def call(inst: Instance) -> str:
        tried.append(inst.instance_id)
        if inst.instance_id == "i1":
            raise ConnectionError("i1 is broken")  # opens i1's breaker (fail_max 1)
        return inst.instance_id

    assert [ds.call("rr", call) for _ in range(2)] == ["i0", "i2"]  # i1 failed, retried on i2
    assert tried == ["i0", "i1", "i2"]
    states = {(s.instance, s.state) for s in ds.breaker_states()}
    assert ("i1", BreakerState.OPEN) in states and ("", BreakerState.CLOSED) in states
    tried.clear()
    seen = [ds.call("rr", call) for _ in range(6)]
    assert "i1" not in tried and "i3" not in tried  # broken and DOWN instances are skipped
    assert sorted(set(seen)) == ["i0", "i2"] and tried == seen
    with pytest.raises(NoInstances):
        ds.call("nobody", lambda i: i)


@pytest.mark.redis
def test_breaker_state_is_shared_through_redis(redis_url: str, unique_name: str) -> None:
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    try:
        s = BreakerSettings(fail_max=2, reset_timeout=30.0)
        a = BreakerBoard(s, s, redis_storage(r, unique_name))
        b = BreakerBoard(s, s, redis_storage(r, unique_name))  # another process, in effect
        now = time.time()
        for _ in range(2):
            a.service("pay").failure(a.service("pay").admit(now), now)
        with pytest.raises(BreakerOpen) as e:
            b.service("pay").admit(now + 1)
        assert now + 28 < e.value.retry_at <= now + 30
        assert [st.state for st in b.states()] == [BreakerState.OPEN]
    finally:
        for k in r.scan_iter(match=f"{unique_name}:*"):
            r.delete(k)
        r.close()
