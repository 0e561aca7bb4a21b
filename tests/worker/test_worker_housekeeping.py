"""The group leader's housekeeping on Apache Kafka and a real Redis: it evicts lapsed registry
leases, so a SIGKILLed worker's entry goes within its lease plus one eviction period, and the
self-preservation rule still holds when most leases lapse at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ringleader.client import Client
from ringleader.registry.backend import RegistryBackend
from ringleader.registry.model import Instance
from ringleader.worker.keeper import EVICT_INTERVAL
from ringleader.worker.registration import worker_service
from tests.worker import procs

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LEASE = 3.0


@pytest.fixture
def prefix() -> str:
    return f"ringleader:test-registry-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def backend(redis_url: str, prefix: str) -> Iterator[RegistryBackend]:
    b = RegistryBackend(redis.Redis.from_url(redis_url), prefix)
    yield b
    b.drop()
    b.redis.close()


@pytest.fixture
def workers(
    kafka_bootstrap: str, redis_url: str, unique_name: str, prefix: str, tmp_path: Path
) -> Iterator[procs.Workers]:
    s = procs.namespace(kafka_bootstrap, redis_url, unique_name)
    extra = {
        "RINGLEADER_WORKER_REGISTRY_PREFIX": prefix,
        "RINGLEADER_WORKER_LEASE_DURATION": str(LEASE),
    }
    with procs.workers_of(s, tmp_path, extra=extra) as ws, Client(settings=s) as c:
        for i in range(2):
            ws.start(f"w{i}", concurrency=1)
        assert c.submit("count", kwargs={"n": 1}).result(timeout=90) == 1
        yield ws


def entries(backend: RegistryBackend, service: str) -> set[str]:
    return {k.split("/", 1)[1] for k in backend.leases() if k.startswith(f"{service}/")}


def test_a_killed_workers_entry_is_evicted_by_the_leader(
    workers: procs.Workers, backend: RegistryBackend, unique_name: str
) -> None:
    service = worker_service(unique_name)
    procs.wait_until(lambda: entries(backend, service) == {"w0", "w1"}, 30, "both registered")
    victim = workers.procs[1]
    victim.kill()
    killed_at = time.monotonic()
    procs.wait_until(lambda: entries(backend, service) == {"w0"}, 60, "the entry to go")
    took = time.monotonic() - killed_at
    # lease + one eviction period, with room for a leader change and a busy machine
    assert took < LEASE + EVICT_INTERVAL + 10, f"evicted after {took:.1f}s"


def test_self_preservation_holds_when_most_leases_lapse_at_once(
    workers: procs.Workers, backend: RegistryBackend
) -> None:
    now = time.time()
    for i in range(20):  # all lapse together, as when a network split hides every renewer
        backend.register(Instance("svc", f"i{i}", f"h{i}:1", lease_duration=1.0), now)
    procs.wait_until(lambda: backend.self_preservation().paused, 30, "self-preservation")
    assert len(entries(backend, "svc")) == 20  # paused: nothing evicted
