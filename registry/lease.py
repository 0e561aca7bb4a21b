"""LeaseKeeper: how a process (a worker) registers itself and keeps its lease alive.

Hook for the worker runtime: create one per worker with its `Instance`, call `start()`
after joining, `close()` on shutdown (cancels the registration). Renewal that finds the
instance gone (evicted, or Redis restarted without its data) registers it again, as a
Eureka client does on a 404 heartbeat.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from ringleader.registry.backend import RegistryBackend
from ringleader.registry.model import Instance, Status

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        backend: RegistryBackend,
        instance: Instance,
        *,
        clock: Callable[[], float] = time.time,
        renew_every: float | None = None,
    ) -> None:
        self.backend = backend
        self.instance = instance
        # The wall clock, not a monotonic one: lease expiries are stored in Redis and read
        # by other processes.
        self.clock = clock
        # Three renewals per lease: one lost heartbeat never lets the lease lapse.
        self.renew_every = renew_every if renew_every is not None else instance.lease_duration / 3
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def tick(self) -> bool:
        """Renew once (register again if the registry lost us). False if Redis is down."""
        with self._lock:
            now = self.clock()
            try:
                if not self.backend.renew(self.instance.service, self.instance.instance_id, now):
                    log.info("registry lost %s; registering again", self.instance.key)
                    self.backend.register(self.instance, now)
            except redis.RedisError as e:
                log.warning("lease renewal of %s failed: %s", self.instance.key, e)
                return False
            return True

    def set_status(self, status: Status) -> None:
        """Change our status (e.g. OUT_OF_SERVICE while draining); kept across re-registers."""
        with self._lock:
            self.instance = self.instance.with_status(status)
            self.backend.register(self.instance, self.clock())

    def start(self) -> None:
        self.backend.register(self.instance, self.clock())
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(self.renew_every):
                self.tick()

        self._thread = threading.Thread(target=loop, name=f"lease-{self.instance.key}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop renewing and cancel the registration (graceful shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.backend.cancel(self.instance.service, self.instance.instance_id)
        except redis.RedisError as e:
            log.warning("cancel of %s failed (its lease will lapse): %s", self.instance.key, e)
