"""Bytes and time of a registry sync after 1 change among N instances: delta vs full fetch.

Bytes are counted on the client's socket (every byte redis-py reads from Redis), so they
include RESP framing, the seq, epoch and hashcode that travel with each sync.

    RINGLEADER_BENCH_REDIS=redis://127.0.0.1:16379/0 \
        .venv/bin/python benchmarks/bench_registry.py [--instances 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
import uuid
from typing import Any

import redis

from ringleader.registry.backend import RegistryBackend
from ringleader.registry.client import RegistryClient, SyncPath
from ringleader.registry.model import Instance, Metadata, Status


class _CountingSocket:
    """Delegates to a socket, counting the bytes received."""

    def __init__(self, sock: socket.socket, meter: list[int]) -> None:
        self._sock = sock
        self._meter = meter

    def recv(self, n: int, *args: Any) -> bytes:
        data = self._sock.recv(n, *args)
        self._meter[0] += len(data)
        return data

    def recv_into(self, buf: Any, *args: Any) -> int:
        n = self._sock.recv_into(buf, *args)
        self._meter[0] += n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


METER = [0]


class CountingConnection(redis.Connection):
    def _connect(self) -> Any:
        return _CountingSocket(super()._connect(), METER)  # type: ignore[misc]


def _instance(n: int, status: Status = Status.UP, address: str | None = None) -> Instance:
    return Instance(
        f"svc{n % 50}",
        f"worker-{n:05d}",
        address or f"http://10.{n // 65536}.{(n // 256) % 256}.{n % 256}:8080",
        status,
        Metadata.of({"pool": f"p{n % 4}", "arch": "amd64"}, f"zone-{n % 3}", 8, "1.4.2"),
        30.0,
    )


def measure(client: RegistryClient, expect: SyncPath) -> tuple[int, float]:
    before = METER[0]
    t0 = time.perf_counter()
    result = client.sync()
    elapsed = time.perf_counter() - t0
    if result.path is not expect:
        raise SystemExit(f"expected a {expect} sync, got {result}")
    return METER[0] - before, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--redis-url", default=os.environ.get("RINGLEADER_BENCH_REDIS", "redis://127.0.0.1:16379/0")
    )
    ap.add_argument("--instances", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    pool = redis.ConnectionPool.from_url(args.redis_url, connection_class=CountingConnection)
    r: redis.Redis[bytes] = redis.Redis(connection_pool=pool)
    backend = RegistryBackend(r, f"bench-{uuid.uuid4().hex[:8]}", log_size=1000)
    try:
        t0 = time.perf_counter()
        for n in range(args.instances):
            backend.register(_instance(n), 1000.0)
        print(f"registered {args.instances} instances in {time.perf_counter() - t0:.1f} s")

        delta_bytes, delta_secs, full_bytes, full_secs = [], [], [], []
        for k in range(args.repeat):
            # a status-preserving change (new address): only the digest notices it
            i = (k * 7919) % args.instances
            delta_client = RegistryClient(backend)
            delta_client.sync()
            backend.register(_instance(i, address=f"http://moved-{k}:8080"), 1000.0)
            b, s = measure(delta_client, SyncPath.DELTA)
            delta_bytes.append(b)
            delta_secs.append(s)
            full_client = RegistryClient(backend)
            b, s = measure(full_client, SyncPath.FULL)
            full_bytes.append(b)
            full_secs.append(s)
            assert delta_client.as_dict() == full_client.as_dict()
            assert delta_client.hashcode == full_client.hashcode

        db, fb = statistics.median(delta_bytes), statistics.median(full_bytes)
        ds, fs = statistics.median(delta_secs), statistics.median(full_secs)
        print(f"sync after 1 change among {args.instances} instances (median of {args.repeat}):")
        print(f"  delta : {db:>10,.0f} bytes  {ds * 1000:8.2f} ms")
        print(f"  full  : {fb:>10,.0f} bytes  {fs * 1000:8.2f} ms")
        ratio = db / fb
        print(
            f"  delta/full bytes = {ratio:.4%}  (target < 1%: {'PASS' if ratio < 0.01 else 'FAIL'})"
        )
        return 0 if ratio < 0.01 else 1
    finally:
        backend.drop()
        r.close()


if __name__ == "__main__":
    sys.exit(main())
