"""Call a downstream service by name: round robin over UP instances, behind breakers,
retried with exponential backoff and jitter (the one `RetryPolicy`) on retriable errors.

Worker hook: `Downstream.call` raises `ServiceUnavailable(service, retry_at)` *instead of*
calling when the service's breaker is open (or every instance's is, or none is UP). That
error is not a failure of the task: the worker parks the task in its unschedulable queue
without spending the task's retry budget, and the queue moves it back to active when
`retry_at` passes (or after its `unschedulable_max_age`, whichever comes first). Nothing
listens for a breaker closing: `subscribe` exists, but no worker subscribes yet.

Clock: `clock` is the wall clock (seconds since the epoch) because breaker state, opened_at
included, is shared by workers through Redis and `retry_at` is compared with it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from ringleader.registry.backend import RegistryBackend
from ringleader.registry.breakers import (
    BreakerBoard,
    BreakerOpen,
    BreakerSettings,
    BreakerState,
    BreakerStatus,
    Listener,
    memory_storage,
    redis_storage,
)
from ringleader.registry.client import InstanceSource, RegistryClient
from ringleader.registry.errors import NoInstances, RegistryError, ServiceUnavailable
from ringleader.registry.model import Instance
from ringleader.retry import Backoff, RetryPolicy

T = TypeVar("T")


class DownstreamError(RegistryError):
    """Raise this from a downstream call to say whether it is worth retrying
    (e.g. HTTP 503 -> retriable=True; HTTP 400 -> retriable=False)."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


def is_retriable(exc: BaseException) -> bool:
    """Transport errors and errors flagged `retriable` are retried and count as breaker
    failures; other errors (the service answered "no") count as successes for the breaker."""
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


#: Calls retry fast and briefly: they run inside one attempt of a task, which has its own
#: retries (and an outage parks the task instead).
DEFAULT_CALL_RETRY = RetryPolicy(
    max_retries=2, backoff=Backoff(initial=0.05, maximum=2.0, jitter=0.05)
)


class Downstream:
    def __init__(
        self,
        source: InstanceSource,
        board: BreakerBoard | None = None,
        retry: RetryPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        retriable: Callable[[BaseException], bool] = is_retriable,
        no_instance_wait: float = 1.0,
        on_close: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.board = board or BreakerBoard()
        self.retry = retry or DEFAULT_CALL_RETRY
        self.clock = clock
        self.sleep = sleep
        self.retriable = retriable
        self._rng = rng or random.Random()
        self.no_instance_wait = no_instance_wait
        self._on_close = on_close
        self._rr: dict[str, int] = {}
        self._rr_lock = threading.Lock()

    def call(self, service: str, fn: Callable[[Instance], T]) -> T:
        """Run `fn(instance)` against an UP instance of `service`.

        Raises ServiceUnavailable (never retried here) when the service cannot be called
        now -- also when the last attempt's failure is what opened the service's breaker,
        so an outage parks the task instead of failing it. Other errors propagate after
        the retry policy is spent (retriable ones) or at once (non-retriable ones).
        """
        attempt = 1
        while True:
            try:
                return self._attempt(service, fn)
            except ServiceUnavailable:
                raise
            except Exception as e:
                if not self.retriable(e):
                    raise
                delay = self.retry.next_delay(attempt, e, self._rng)
                if delay is None:
                    now = self.clock()
                    ready = self.board.service(service).ready_at(now)
                    if ready > now:
                        raise ServiceUnavailable(service, ready, f"breaker opened: {e}") from e
                    raise
            self.sleep(delay)
            attempt += 1

    def _attempt(self, service: str, fn: Callable[[Instance], T]) -> T:
        now = self.clock()
        svc = self.board.service(service)
        try:
            sp = svc.admit(now)
        except BreakerOpen as e:
            raise ServiceUnavailable(service, e.retry_at, f"service breaker {e.reason}") from e
        chosen = None
        try:
            ups = list(self.source.up(service))
            if not ups:
                raise NoInstances(service, now + self.no_instance_wait, "no instance is UP")
            start = self._next(service)
            earliest = float("inf")
            for k in range(len(ups)):
                inst = ups[(start + k) % len(ups)]
                try:
                    chosen = (inst, self.board.instance(service, inst.instance_id).admit(now))
                    break
                except BreakerOpen as e:
                    earliest = min(earliest, e.retry_at)
            if chosen is None:
                raise ServiceUnavailable(service, earliest, "every instance's breaker is open")
        except ServiceUnavailable:
            svc.release(sp)
            raise
        inst, ip = chosen
        ib = self.board.instance(service, inst.instance_id)
        try:
            result = fn(inst)  # no breaker lock is held here
        except BaseException as e:
            done = self.clock()
            if isinstance(e, Exception) and self.retriable(e):
                ib.failure(ip, done)
                svc.failure(sp, done)
            elif isinstance(e, Exception):
                ib.success(ip, done)  # the service answered; the error is the caller's
                svc.success(sp, done)
            else:
                ib.release(ip)
                svc.release(sp)
            raise
        done = self.clock()
        ib.success(ip, done)
        svc.success(sp, done)
        return result

    def _next(self, service: str) -> int:
        with self._rr_lock:
            n = self._rr.get(service, 0)
            self._rr[service] = n + 1
            return n

    # hooks for the worker and for `ringleader status` -----------------------------------

    def retry_at(self, service: str) -> float:
        """When a call to `service` may be let through (now, if it may be now)."""
        now = self.clock()
        ready = self.board.service(service).ready_at(now)
        ups = list(self.source.up(service))
        if not ups:
            return max(ready, now + self.no_instance_wait)
        inst_ready = min(self.board.instance(service, i.instance_id).ready_at(now) for i in ups)
        return max(ready, inst_ready)

    def available(self, service: str) -> bool:
        return self.retry_at(service) <= self.clock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear breaker state changes: (name, old, new). A CLOSED `new` means the service
        recovered; OPEN -> HALF_OPEN happens lazily when a call is admitted after
        `retry_at`, so pollers should use `retry_at`/`available` rather than wait for it."""
        return self.board.subscribe(listener)

    def breaker_states(self) -> list[BreakerStatus]:
        return self.board.states()

    def close(self) -> None:
        """Release what was handed over as `on_close` (`connect_downstream`'s sync thread and
        Redis connections)."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None


def connect_downstream(
    redis_url: str,
    *,
    prefix: str = "ringleader:registry",
    service_breaker: BreakerSettings | None = None,
    instance_breaker: BreakerSettings | None = None,
    retry: RetryPolicy | None = None,
    shared_breakers: bool = True,
    sync_interval: float = 1.0,
) -> Downstream:
    """A Downstream over the registry in Redis at `redis_url`: a local copy kept in sync in
    the background, and breakers whose state is shared through Redis (so every worker, and
    `ringleader status`, sees an open breaker) unless `shared_breakers` is False.

    Redis being down at connect time is not an error: the copy is empty and stale until a
    sync succeeds, and calls meanwhile raise NoInstances (the task is parked, not failed).
    """
    r: redis.Redis[bytes] = redis.Redis.from_url(
        redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
    )
    source = RegistryClient(RegistryBackend(r, prefix))
    source.sync()
    source.start(sync_interval)
    storage = redis_storage(r, prefix) if shared_breakers else memory_storage
    board = BreakerBoard(service_breaker, instance_breaker, storage)

    def close() -> None:
        source.stop()
        r.close()

    return Downstream(source, board, retry, on_close=close)


def breaker_rows(states: list[BreakerStatus]) -> list[tuple[str, str, str, int]]:
    """(service, instance, state, failures) rows for `ringleader status`."""
    return [(s.service, s.instance, str(s.state), s.failures) for s in states]


__all__ = [
    "DEFAULT_CALL_RETRY",
    "Backoff",
    "BreakerState",
    "Downstream",
    "DownstreamError",
    "RetryPolicy",
    "breaker_rows",
    "connect_downstream",
    "is_retriable",
]
