"""`handle.result()` without a timeout raises ResultGone instead of waiting forever when the
task's result can no longer appear (its record expired, or it was dead-lettered with none)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from ringleader.client import Client
from ringleader.handles import TaskHandle
from ringleader.worker.errors import ResultGone
from ringleader.worker.namespace import ensure_topics
from ringleader.worker.results import ResultStore
from ringleader.worker.settings import AppSettings
from tests.worker import procs

pytestmark = [pytest.mark.redis]
PARTITIONS = 2
TTL = 4.0


def _result_within(h: TaskHandle, seconds: float) -> tuple[str, Any]:
    """Call h.result() (no timeout) on a thread; ("hung", None) if it did not return."""
    out: list[tuple[str, Any]] = []

    def call() -> None:
        try:
            out.append(("value", h.result()))
        except Exception as e:  # noqa: BLE001 - handed to the test to judge
            out.append(("error", e))

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    return out[0] if out else ("hung", None)


def _forgotten(store: ResultStore, task_id: str) -> bool:
    return store.get_status(task_id) is None and not store.has_runs(task_id)


@pytest.mark.broker
def test_expired_record_raises_and_completed_is_returned(
    broker: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    ns = unique_name
    settings = AppSettings(
        namespace=ns, bootstrap=broker, redis=redis_url, partitions=PARTITIONS, result_ttl=TTL
    )
    ensure_topics(settings)
    env = procs.worker_env(ns, broker, redis_url, partitions=PARTITIONS)
    env["RINGLEADER_RESULT_TTL"] = str(TTL)
    workers = procs.Workers(env, tmp_path)
    try:
        w = workers.start("w1")
        # With a TTL of seconds, a task acknowledged before any worker fetches counts as gone.
        procs.wait_until(lambda: "applied: partitions" in w.log_text(), 60, "the assignment")
        with Client(settings=settings) as client:
            h = client.submit("count", kwargs={"n": 7})
            assert _result_within(h, 60) == ("value", 7)  # completed: returned at once
            store = client.results
            procs.wait_until(lambda: _forgotten(store, h.id), 30, "the record to expire")
            kind, err = _result_within(h, 10)
            assert kind == "error" and isinstance(err, ResultGone), (kind, err)
            assert "knows nothing" in str(err) and "result TTL" in str(err)
            assert err.task_id == h.id
    except BaseException:
        print(workers.dump_logs())
        raise
    finally:
        workers.close()


@pytest.mark.broker
def test_task_dead_lettered_as_a_raw_record_raises(
    broker: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    """A task the worker cannot decode (larger than its payload limit) is dead-lettered as a
    raw record: no status, no result. The handle stops waiting once the TTL has passed."""
    ns = unique_name
    settings = AppSettings(
        namespace=ns, bootstrap=broker, redis=redis_url, partitions=PARTITIONS, result_ttl=TTL
    )
    ensure_topics(settings)
    env = procs.worker_env(ns, broker, redis_url, partitions=PARTITIONS)
    env["RINGLEADER_MAX_PAYLOAD_BYTES"] = "1024"  # the client allows far more
    workers = procs.Workers(env, tmp_path)
    try:
        w = workers.start("w1")
        # With a TTL of seconds, a task acknowledged before any worker fetches counts as gone.
        procs.wait_until(lambda: "applied: partitions" in w.log_text(), 60, "the assignment")
        with Client(settings=settings) as client:
            small = client.submit("count", kwargs={"n": 1})
            big = client.submit("count", kwargs={"n": 2, "pad": "x" * 4096})
            assert _result_within(small, 60) == ("value", 1)
            procs.wait_until(
                lambda: "oversized payload" in workers.dump_logs(), 30, "the dead letter"
            )
            started = time.monotonic()
            kind, err = _result_within(big, 30)
            assert kind == "error" and isinstance(err, ResultGone), (kind, err)
            assert time.monotonic() - started < TTL + 5
    except BaseException:
        print(workers.dump_logs())
        raise
    finally:
        workers.close()


def test_dead_lettered_status_without_a_record_raises_at_once(
    redis_url: str, unique_name: str
) -> None:
    settings = AppSettings(namespace=unique_name, bootstrap="127.0.0.1:9", redis=redis_url)
    task_id = "ab" * 16
    r: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    r.set(f"ringleader:{unique_name}:{{{task_id}}}:status", "dead_lettered", px=60_000)
    with Client(settings=settings) as client:
        h = TaskHandle(client, task_id, "noop", 0)
        kind, err = _result_within(h, 10)
        assert kind == "error" and isinstance(err, ResultGone), (kind, err)
        assert "dead-lettered without a result record" in str(err)
        # Acknowledged just now and nothing known yet: it may still run, so result() waits.
        fresh = TaskHandle(client, "cd" * 16, "noop", 0)
        assert _result_within(fresh, 1.0) == ("hung", None)
