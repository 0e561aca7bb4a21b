"""A worker's entry in the service registry, kept up without ever failing the worker.

`LeaseKeeper` renews the lease; this wrapper registers in the background (retrying while Redis
is down), publishes the partitions the worker holds as labels, and cancels on shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence

import redis

from ringleader.registry.backend import RegistryBackend
from ringleader.registry.errors import RegistryError
from ringleader.registry.lease import LeaseKeeper
from ringleader.registry.model import Instance, Metadata
from ringleader.registry.settings import RegistrySettings

log = logging.getLogger("ringleader.worker.registration")

_RETRY = 2.0


def eviction_backend(client: redis.Redis[bytes], prefix: str) -> RegistryBackend:
    """The registry as the group leader's keeper evicts it: the self-preservation rule from
    RINGLEADER_SELF_PRESERVATION_SHARE / _MIN_LEASES, as the registry CLI reads it."""
    rs = RegistrySettings.from_env()
    return RegistryBackend(
        client,
        prefix,
        self_preservation_share=rs.self_preservation_share,
        self_preservation_min_leases=rs.self_preservation_min_leases,
    )


def worker_service(namespace: str) -> str:
    """The registry service workers of a namespace register under."""
    return f"{namespace}.workers"


class Registration:
    def __init__(
        self,
        redis_url: str,
        namespace: str,
        worker_id: str,
        *,
        capacity: int,
        version: str = "",
        prefix: str = "ringleader:registry",
        lease_duration: float = 15.0,
    ) -> None:
        client: redis.Redis[bytes] = redis.Redis.from_url(
            redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._backend = RegistryBackend(client, prefix)
        self._capacity = capacity
        self._version = version
        self._instance = Instance(
            service=worker_service(namespace),
            instance_id=worker_id,
            address=f"{socket.gethostname()}:{os.getpid()}",
            metadata=self._metadata((), -1),
            lease_duration=lease_duration,
        )
        self._keeper = LeaseKeeper(self._backend, self._instance)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._dirty = True
        self._started = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._loop, name="ringleader-registration", daemon=True
        )

    def _metadata(self, partitions: Sequence[int], generation: int) -> Metadata:
        return Metadata.of(
            labels={
                "partitions": ",".join(str(p) for p in sorted(partitions)),
                "generation": str(generation),
            },
            capacity=self._capacity,
            version=self._version,
        )

    def start(self) -> None:
        self._thread.start()

    def update(self, partitions: Sequence[int], generation: int) -> None:
        """Publish what the worker holds now (registered in the background)."""
        with self._lock:
            self._instance = Instance(
                service=self._instance.service,
                instance_id=self._instance.instance_id,
                address=self._instance.address,
                metadata=self._metadata(partitions, generation),
                lease_duration=self._instance.lease_duration,
            )
            self._dirty = True
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                dirty, instance = self._dirty, self._instance
                self._dirty = False
            if dirty:
                try:
                    # The keeper re-registers this instance when its renewal finds it gone.
                    self._keeper.instance = instance
                    if not self._started:
                        self._keeper.start()
                        self._started = True
                    else:
                        self._backend.register(instance, time.time())
                except (redis.RedisError, RegistryError) as e:
                    log.warning("registering worker failed (%s); retrying", e)
                    with self._lock:
                        self._dirty = True
                    self._stop.wait(_RETRY)
                    continue
            self._wake.wait(_RETRY)
            self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5.0)
        if self._started:
            self._keeper.close()  # stops renewing and cancels (logs a Redis failure)
