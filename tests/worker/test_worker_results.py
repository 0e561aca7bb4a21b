from __future__ import annotations

import threading
import time
import uuid

import msgpack
import pytest
import redis

from ringleader.worker.errors import EnvelopeError, ResultTimeout, TaskError
from ringleader.worker.results import CompletionWrite, ResultStore, Status

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_client: redis.Redis[bytes]) -> redis.Redis[bytes]:
    return redis_client


@pytest.fixture
def store(redis_client: redis.Redis[bytes], redis_prefix: str) -> ResultStore:
    return ResultStore(redis_client, redis_prefix)


def tid() -> str:
    return uuid.uuid4().hex


def test_completion_recorded_once_and_not_overwritten(store: ResultStore) -> None:
    t = tid()
    assert not store.is_completed(t) and store.get_completion(t) is None
    assert store.record_completion(t, {"n": [1, 2]}, ttl=60, at=5.0, worker_id="w1")
    assert store.is_completed(t)
    # A redelivered execution completes again: skipped, the first result stays.
    assert not store.record_completion(t, "second", ttl=60, worker_id="w2")
    assert not store.record_failure(t, "RuntimeError", "late", ttl=60)
    c = store.get_completion(t)
    assert c is not None and c.ok and c.value() == {"n": [1, 2]}
    assert (c.at, c.worker_id) == (5.0, "w1")
    assert store.get_status(t) is Status.SUCCEEDED


def test_concurrent_completions_exactly_one_wins(redis_url: str, store: ResultStore) -> None:
    t = tid()
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        s = ResultStore(redis.Redis.from_url(redis_url), store._prefix)
        barrier.wait()
        wins.append(s.record_completion(t, i, ttl=60))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert sorted(wins) == [False] * 7 + [True]


def test_prepacked_result(store: ResultStore) -> None:
    t = tid()
    store.record_completion(t, None, ttl=60, packed=msgpack.packb([b"\x00", 1.5]))
    c = store.get_completion(t)
    assert c is not None and c.result == [b"\x00", 1.5]


def test_failure_raises_task_error(store: ResultStore) -> None:
    t = tid()
    assert store.record_failure(t, "KeyError", "'x'", ttl=60)
    c = store.wait_result(t, timeout=1)
    assert not c.ok
    with pytest.raises(TaskError, match="KeyError: 'x'") as ei:
        c.value()
    assert ei.value.task_id == t
    assert store.get_status(t) is Status.DEAD_LETTERED


def test_status_progression_and_terminal_guard(store: ResultStore) -> None:
    t = tid()
    assert store.get_status(t) is None
    assert store.set_status(t, Status.PENDING, ttl=60)
    assert store.set_status(t, Status.STARTED, ttl=60)
    assert store.get_status(t) is Status.STARTED
    store.record_completion(t, 1, ttl=60)
    # A duplicate execution starting after completion cannot regress the status.
    assert not store.set_status(t, Status.STARTED, ttl=60)
    assert store.get_status(t) is Status.SUCCEEDED
    with pytest.raises(ValueError, match="record_completion"):
        store.set_status(t, Status.SUCCEEDED, ttl=60)


def test_ttl_applied(client: redis.Redis[bytes], store: ResultStore) -> None:
    t = tid()
    store.set_status(t, Status.STARTED, ttl=30)
    store.record_completion(t, 1, ttl=100)
    done, status, notify, _ = store._keys(t)
    for key in (done, notify):
        assert 90_000 < client.pttl(key) <= 100_000
    # The status key is not rewritten on completion (the record answers get_status); it
    # keeps its own, shorter TTL, so it never outlives the record.
    assert 0 < client.pttl(status) <= 30_000
    with pytest.raises(ValueError, match="ttl"):
        store.record_completion(tid(), 1, ttl=0)


def test_short_ttl_expires(store: ResultStore) -> None:
    t = tid()
    store.record_completion(t, 1, ttl=0.05)
    deadline = time.monotonic() + 5
    while store.is_completed(t):
        assert time.monotonic() < deadline, "completion did not expire"
        time.sleep(0.02)


def test_wait_result_times_out(store: ResultStore) -> None:
    t = tid()
    start = time.monotonic()
    with pytest.raises(ResultTimeout) as ei:
        store.wait_result(t, timeout=0.2)
    elapsed = time.monotonic() - start
    assert 0.15 < elapsed < 2.0
    assert isinstance(ei.value, TimeoutError)
    with pytest.raises(ResultTimeout):
        store.wait_result(t, timeout=0)


def test_wait_result_wakes_within_milliseconds(redis_url: str, store: ResultStore) -> None:
    latencies = []
    for _ in range(20):
        t = tid()
        got: list[float] = []

        def waiter(task_id: str = t, out: list[float] = got) -> None:
            s = ResultStore(redis.Redis.from_url(redis_url), store._prefix)
            s.wait_result(task_id, timeout=10)
            out.append(time.monotonic())

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.02)  # let the waiter block; a late start only takes the fast path
        done_at = time.monotonic()
        store.record_completion(t, "ok", ttl=60)
        th.join(10)
        assert got, "waiter never returned"
        latencies.append(got[0] - done_at)
    latencies.sort()
    # Loaded 2-core machine: generous bound, but far below any polling interval.
    assert latencies[len(latencies) // 2] < 0.05, latencies


def test_many_waiters_all_woken_and_later_callers_too(redis_url: str, store: ResultStore) -> None:
    t = tid()
    results: list[object] = []

    def waiter() -> None:
        s = ResultStore(redis.Redis.from_url(redis_url), store._prefix)
        results.append(s.wait_result(t, timeout=10).value())

    threads = [threading.Thread(target=waiter) for _ in range(5)]
    for th in threads:
        th.start()
    time.sleep(0.05)
    store.record_completion(t, 42, ttl=60)
    for th in threads:
        th.join(10)
    assert results == [42] * 5
    assert store.wait_result(t, timeout=1).value() == 42


def test_rejects_decoding_client(redis_url: str) -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        ResultStore(redis.Redis.from_url(redis_url, decode_responses=True), "p")  # type: ignore[arg-type]


def test_unserialisable_result_rejected(store: ResultStore) -> None:
    with pytest.raises(EnvelopeError, match="not msgpack-serialisable"):
        store.record_completion(tid(), object(), ttl=60)


def test_corrupt_record_is_a_clear_error(client: redis.Redis[bytes], store: ResultStore) -> None:
    t = tid()
    client.set(store._keys(t)[0], b"\xc1junk")
    with pytest.raises(EnvelopeError, match="completion record"):
        store.get_completion(t)


def test_record_many_once_only_per_task(store: ResultStore) -> None:
    a, b, c = tid(), tid(), tid()
    store.record_completion(a, "first", ttl=60)
    wins = store.record_many(
        [
            CompletionWrite(a, packed=msgpack.packb("again")),
            CompletionWrite(b, packed=msgpack.packb([1])),
            CompletionWrite(c, error_type="ValueError", error="bad", worker_id="w9"),
            CompletionWrite(b, packed=msgpack.packb([2])),
        ],
        ttl=60,
    )
    assert wins == [False, True, True, False]
    assert store.wait_result(a, 1).value() == "first"
    assert store.wait_result(b, 1).value() == [1]
    failed = store.wait_result(c, 1)
    assert not failed.ok and failed.worker_id == "w9"
    assert store.get_status(c) is Status.DEAD_LETTERED


def test_the_same_write_retried_counts_as_recorded(store: ResultStore) -> None:
    """A write whose reply was lost (Redis died after applying it) is retried by the flusher:
    the stored record is that very write, so it is recorded, not 'completed by another'."""
    t = tid()
    mine = CompletionWrite(t, packed=msgpack.packb(1), at=5.0, worker_id="w1")
    assert store.record_many([mine], ttl=60) == [True]
    assert store.record_many([mine], ttl=60) == [True]
    other = CompletionWrite(t, packed=msgpack.packb(1), at=6.0, worker_id="w2")
    assert store.record_many([other], ttl=60) == [False]
    assert store.wait_result(t, 1).worker_id == "w1"


def test_set_statuses(store: ResultStore) -> None:
    a, b = tid(), tid()
    store.record_completion(b, 1, ttl=60)
    assert store.set_statuses([(a, Status.STARTED), (b, Status.STARTED)], ttl=60) == [True, False]
    assert store.get_status(a) is Status.STARTED and store.get_status(b) is Status.SUCCEEDED


def test_completed_many_and_count_completed(client: redis.Redis[bytes]) -> None:
    prefix = f"test-results-{uuid.uuid4().hex}"
    store = ResultStore(client, prefix)
    try:
        ids = [tid() for _ in range(5)]
        assert store.completed_many([]) == []
        assert store.completed_many(ids) == [False] * 5  # the one-command path
        for i in (1, 3):
            assert store.record_completion(ids[i], i, ttl=60)
        assert store.completed_many(ids) == [False, True, False, True, False]
        assert store.count_completed(ids) == 2
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def test_batch_write_is_once_only_and_survives_a_script_flush(
    client: redis.Redis[bytes],
) -> None:
    prefix = f"test-results-{uuid.uuid4().hex}"
    store = ResultStore(client, prefix)
    try:
        a, b, c = tid(), tid(), tid()
        assert store.write([], [], ttl=60) == ([], [], [])
        flags = store.write(
            [(c, Status.STARTED)],
            [CompletionWrite(a, packed=msgpack.packb(1)), CompletionWrite(b, error_type="E")],
            ttl=60,
        )
        assert flags == ([True], [True, True], [])
        assert store.get_status(c) is Status.STARTED
        assert store.get_status(a) is Status.SUCCEEDED and store.wait_result(a, 1).value() == 1
        assert store.get_status(b) is Status.DEAD_LETTERED
        client.script_flush()  # as after a Redis restart: NOSCRIPT, loaded, sent again
        flags = store.write(
            [(a, Status.RETRYING)],  # a completed task keeps its terminal status
            [CompletionWrite(a, packed=msgpack.packb(2)), CompletionWrite(c, packed=b"\xc0")],
            ttl=60,
        )
        assert flags == ([False], [False, True], [])
        first = store.get_completion(a)
        assert first is not None and first.value() == 1
        assert store.get_status(a) is Status.SUCCEEDED
        assert store.get_status(c) is Status.SUCCEEDED
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)


def test_event_kinds_that_name_a_status_carry_its_value() -> None:
    """One task Status: the event kinds (transitions) reuse the statuses' names and values."""
    from ringleader.worker.envelope import EventKind

    shared = {k.name for k in EventKind} & {s.name for s in Status}
    assert shared == {"STARTED", "SUCCEEDED", "RETRYING", "DEAD_LETTERED", "CANCELLED"}
    assert all(EventKind[n].value == Status[n].value for n in shared)
