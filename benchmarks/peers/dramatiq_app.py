"""Dramatiq on Redis with the Results middleware on Redis, the no-op actor `noop`.

Worker: `python -m dramatiq peers.dramatiq_app:broker -p 2 -t 8` with BENCH_PEERS_* set (see
peers/__init__.py). The benchmark's own process calls `make(env)` once per trial.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from peers import marks


def make(env: Mapping[str, str]) -> tuple[RedisBroker, RedisBackend, dramatiq.Actor[Any, Any]]:
    url = env.get("BENCH_PEERS_REDIS", "redis://127.0.0.1:6379/0")
    prefix = env.get("BENCH_PEERS_PREFIX", "bench-peers:dramatiq:")
    # Queues and results under the trial's prefix (readable result keys, so they can be
    # deleted by prefix after the trial).
    broker = RedisBroker(url=url, namespace=f"{prefix}dramatiq")
    backend = RedisBackend(url=url, namespace=f"{prefix}results", use_namespace_prefix_keys=True)
    broker.add_middleware(Results(backend=backend))

    def noop() -> None:
        marks.noop_body()

    # store_results: every system writes each task's result to Redis, as ringleader always does.
    actor = dramatiq.actor(noop, actor_name="noop", broker=broker, store_results=True)
    return broker, backend, actor


broker, backend, noop = make(os.environ)
dramatiq.set_broker(broker)
