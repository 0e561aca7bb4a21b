"""The completion record every system's no-op task body writes: the same code and the same one
Redis round trip for Celery, Dramatiq and ringleader, so the drain figures compare.

Keys, under the trial's prefix P (BENCH_PEERS_PREFIX):
  P marks   sorted set: member "first" = the earliest body start (wall time), "last" = the
            latest body end; ZADD LT / GT keep the minimum and the maximum whatever the order
            the worker threads and processes finish in
  P done    counter: bodies finished
"""

from __future__ import annotations

import os
import threading
import time

import redis


def marks_key(prefix: str) -> str:
    return f"{prefix}marks"


def done_key(prefix: str) -> str:
    return f"{prefix}done"


_lock = threading.Lock()
_clients: dict[int, redis.Redis[bytes]] = {}  # pid -> that process's client


def _redis() -> redis.Redis[bytes]:
    # One client per process, made on first use: Celery's prefork children are forked after
    # the app module is imported and need connections of their own. Under a lock: a client
    # made by a losing thread and dropped would close its pool's sockets on collection while
    # that thread still used them.
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        with _lock:
            client = _clients.get(pid)
            if client is None:
                client = _clients[pid] = redis.Redis.from_url(os.environ["BENCH_PEERS_REDIS"])
    return client


def noop_body() -> None:
    """The task: nothing, then one pipelined write of its start, its end and a count."""
    started = time.time()
    prefix = os.environ["BENCH_PEERS_PREFIX"]
    pipe = _redis().pipeline(transaction=False)
    pipe.zadd(marks_key(prefix), {"first": started}, lt=True)
    pipe.zadd(marks_key(prefix), {"last": time.time()}, gt=True)
    pipe.incr(done_key(prefix))
    pipe.execute()
