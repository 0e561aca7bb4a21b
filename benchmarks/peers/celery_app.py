"""Celery on Redis (broker and result backend), the no-op task `noop`.

Worker: `python -m celery -A peers.celery_app worker --pool prefork -c 2` with BENCH_PEERS_*
set (see peers/__init__.py). The benchmark's own process calls `make(env)` once per trial.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task

from peers import marks


def make(env: Mapping[str, str]) -> tuple[Celery, Task[Any, Any]]:
    url = env.get("BENCH_PEERS_REDIS", "redis://127.0.0.1:6379/0")
    prefix = env.get("BENCH_PEERS_PREFIX", "bench-peers:celery:")
    app = Celery("bench_peers", broker=url, backend=url)
    app.conf.update(
        # Every key of this trial (queue, unacked, bindings, results) under its own prefix.
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        broker_connection_retry_on_startup=True,
        # The rest is Celery's default: early ack, prefetch multiplier 4, results stored.
    )

    @app.task(name="noop")
    def noop() -> None:
        marks.noop_body()

    return app, noop


app, noop = make(os.environ)
