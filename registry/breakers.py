"""Circuit breakers whose lock never covers the guarded call.

pybreaker's `CircuitBreaker.call` runs the wrapped function while holding the breaker's
lock (pybreaker issue 55), so every call through one shared breaker is serialized: with
a per-service breaker shared by a worker's pool, one slow downstream call would stall all
the others. This module keeps pybreaker's *state storage* (`CircuitMemoryStorage`, or
`CircuitRedisStorage` to share a breaker's state across processes) and its state names
and semantics (consecutive failures up to `fail_max` open it; after `reset_timeout` it
half-opens; `success_threshold` trial successes close it), but splits a call in three:

    permit = breaker.admit(now)      # under the lock: may raise BreakerOpen
    ...the call runs, lock released...
    breaker.success(permit, now) / breaker.failure(permit, now)   # under the lock

Half-open admits at most `half_open_max_calls` trial calls at once (per process), so a
recovering service is probed, not stampeded. Time comes in as `now` (seconds since the
epoch: the same clock as the storage's `opened_at`). With Redis storage `opened_at` is
kept in whole seconds, so a shared breaker may half-open up to a second early.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pybreaker
import redis

from ringleader.registry.errors import RegistryError

log = logging.getLogger(__name__)


class BreakerState(enum.StrEnum):
    CLOSED = pybreaker.STATE_CLOSED
    OPEN = pybreaker.STATE_OPEN
    HALF_OPEN = pybreaker.STATE_HALF_OPEN


@dataclass(frozen=True)
class BreakerSettings:
    fail_max: int = 5
    reset_timeout: float = 30.0
    success_threshold: int = 1
    half_open_max_calls: int = 1
    #: retry_at offered to callers turned away while a half-open trial is in flight
    trial_wait: float = 1.0

    def __post_init__(self) -> None:
        if self.fail_max < 1 or self.success_threshold < 1 or self.half_open_max_calls < 1:
            raise ValueError("fail_max, success_threshold, half_open_max_calls must be >= 1")
        if self.reset_timeout <= 0 or self.trial_wait <= 0:
            raise ValueError("reset_timeout and trial_wait must be > 0")


class BreakerOpen(RegistryError):
    """The breaker turned a call away; it will admit a trial at `retry_at`."""

    retriable = True

    def __init__(self, name: str, retry_at: float, reason: str) -> None:
        super().__init__(f"breaker {name} open until {retry_at:.3f} ({reason})")
        self.name = name
        self.retry_at = retry_at
        self.reason = reason


@dataclass(frozen=True)
class Permit:
    """Proof of admission; hand it back with the outcome."""

    breaker: str
    trial: bool


@dataclass(frozen=True)
class BreakerStatus:
    service: str
    instance: str  # "" for the service-wide breaker
    state: BreakerState
    failures: int
    retry_at: float | None  # when an open breaker half-opens


#: (breaker name, old state, new state)
Listener = Callable[[str, BreakerState, BreakerState], None]


class Breaker:
    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        storage: pybreaker.CircuitBreakerStorage,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.storage = storage
        self._listeners = listeners if listeners is not None else []
        self._lock = threading.Lock()
        self._trials = 0

    # decisions (short, under the lock) --------------------------------------------------

    def admit(self, now: float) -> Permit:
        with self._lock:
            state = BreakerState(self.storage.state)
            if state is BreakerState.OPEN:
                reopen = self._half_open_at()
                if reopen is not None and now < reopen:
                    raise BreakerOpen(self.name, reopen, "open")
                self._set(BreakerState.HALF_OPEN, state)
                self.storage.reset_success_counter()
                state = BreakerState.HALF_OPEN
            if state is BreakerState.HALF_OPEN:
                if self._trials >= self.settings.half_open_max_calls:
                    raise BreakerOpen(self.name, now + self.settings.trial_wait, "trial in flight")
                self._trials += 1
                return Permit(self.name, trial=True)
            return Permit(self.name, trial=False)

    def success(self, permit: Permit, now: float) -> None:
        with self._lock:
            self._end(permit)
            state = BreakerState(self.storage.state)
            if state is BreakerState.HALF_OPEN:
                self.storage.increment_success_counter()
                if self.storage.success_counter >= self.settings.success_threshold:
                    self.storage.reset_counter()
                    self.storage.reset_success_counter()
                    self._set(BreakerState.CLOSED, state)
            elif state is BreakerState.CLOSED:
                self.storage.reset_counter()  # failures count consecutively, as in pybreaker

    def failure(self, permit: Permit, now: float) -> None:
        with self._lock:
            self._end(permit)
            state = BreakerState(self.storage.state)
            if state is BreakerState.CLOSED:
                self.storage.increment_counter()
                if self.storage.counter >= self.settings.fail_max:
                    self._open(now, state)
            elif state is BreakerState.HALF_OPEN:
                self._open(now, state)
            # already OPEN (tripped by a concurrent call or another process): nothing to add

    def release(self, permit: Permit) -> None:
        """The admitted call never ran (e.g. no instance to call): no outcome to record."""
        with self._lock:
            self._end(permit)

    # reading ----------------------------------------------------------------------------

    def status(self, service: str, instance: str) -> BreakerStatus:
        state = BreakerState(self.storage.state)
        retry_at = self._half_open_at() if state is BreakerState.OPEN else None
        return BreakerStatus(service, instance, state, self.storage.counter, retry_at)

    def ready_at(self, now: float) -> float:
        """When this breaker would admit a call: `now` if it would admit one now."""
        state = BreakerState(self.storage.state)
        if state is BreakerState.OPEN:
            reopen = self._half_open_at()
            return now if reopen is None else max(now, reopen)
        if state is BreakerState.HALF_OPEN and self._trials >= self.settings.half_open_max_calls:
            return now + self.settings.trial_wait
        return now

    # internals --------------------------------------------------------------------------

    def _half_open_at(self) -> float | None:
        opened = self.storage.opened_at
        return None if opened is None else opened.timestamp() + self.settings.reset_timeout

    def _open(self, now: float, old: BreakerState) -> None:
        self.storage.opened_at = datetime.fromtimestamp(now, UTC)
        self.storage.reset_success_counter()
        self._set(BreakerState.OPEN, old)

    def _set(self, new: BreakerState, old: BreakerState) -> None:
        self.storage.state = new.value
        if new is not old:
            log.info("breaker %s: %s -> %s", self.name, old, new)
            for cb in list(self._listeners):
                cb(self.name, old, new)

    def _end(self, permit: Permit) -> None:
        if permit.trial:
            self._trials = max(0, self._trials - 1)


StorageFactory = Callable[[str], pybreaker.CircuitBreakerStorage]


def memory_storage(name: str) -> pybreaker.CircuitBreakerStorage:
    return pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)


def redis_storage(client: redis.Redis[bytes], prefix: str) -> StorageFactory:
    """Share breaker state through Redis (pybreaker's CircuitRedisStorage), per name."""

    def make(name: str) -> pybreaker.CircuitBreakerStorage:
        return pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace=f"{prefix}:breaker:{name}"
        )

    return make


class BreakerBoard:
    """All breakers of one process: one per service, one per (service, instance)."""

    def __init__(
        self,
        service_settings: BreakerSettings | None = None,
        instance_settings: BreakerSettings | None = None,
        storage: StorageFactory = memory_storage,
    ) -> None:
        self.service_settings = service_settings or BreakerSettings()
        self.instance_settings = instance_settings or BreakerSettings()
        self._storage = storage
        self._services: dict[str, Breaker] = {}
        self._instances: dict[tuple[str, str], Breaker] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Called on every state change of every breaker (e.g. half-open -> closed)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def service(self, service: str) -> Breaker:
        with self._lock:
            b = self._services.get(service)
            if b is None:
                b = Breaker(service, self.service_settings, self._storage(service), self._listeners)
                self._services[service] = b
            return b

    def instance(self, service: str, instance_id: str) -> Breaker:
        with self._lock:
            b = self._instances.get((service, instance_id))
            if b is None:
                name = f"{service}/{instance_id}"
                b = Breaker(name, self.instance_settings, self._storage(name), self._listeners)
                self._instances[(service, instance_id)] = b
            return b

    def states(self) -> list[BreakerStatus]:
        """Every breaker this process knows, for `ringleader status`."""
        with self._lock:
            services = sorted(self._services.items())
            instances = sorted(self._instances.items())
        out = [b.status(s, "") for s, b in services]
        out += [b.status(s, i) for (s, i), b in instances]
        return sorted(out, key=lambda st: (st.service, st.instance))
