"""Errors raised by the registry and by circuit-broken downstream calls.

Every error derives from `ringleader.errors.RingleaderError` and, like kafka-python's
errors, says whether retrying the same operation may succeed (`retriable`), so callers can
decide without matching on types.
"""

from __future__ import annotations

import redis

from ringleader.errors import ConfigError, RedisUnavailableError, RingleaderError

__all__ = [
    "ConcurrentUpdate",
    "DecodeError",
    "InstanceNotFound",
    "InvalidInstance",
    "InvalidSetting",
    "NoInstances",
    "RegistryError",
    "RegistryUnavailable",
    "ServiceUnavailable",
]

#: A registry setting that cannot work is the same `ConfigError` every settings class
#: raises (one wording for a bad variable everywhere); the old name stays importable.
InvalidSetting = ConfigError


class RegistryError(RingleaderError):
    """Base class of every error raised by the `registry` package."""


class DecodeError(RegistryError):
    """Bytes read from Redis (or given by a user) are not a valid encoded instance."""


class InvalidInstance(RegistryError, ValueError):
    """An instance's fields break the model's rules (empty service name, bad status...)."""


class InstanceNotFound(RegistryError):
    """The instance is not registered (cancelled, evicted, or Redis lost its data)."""

    def __init__(self, service: str, instance_id: str) -> None:
        super().__init__(f"instance {service}/{instance_id} is not registered")
        self.service = service
        self.instance_id = instance_id


class ConcurrentUpdate(RegistryError):
    """A compare-and-set lost against a concurrent writer more times than allowed."""

    retriable = True


class RegistryUnavailable(RegistryError, RedisUnavailableError, redis.ConnectionError):
    """The registry's Redis could not be reached; the operation may succeed later.

    Raised by `RegistryBackend` in place of redis-py's ConnectionError/TimeoutError (the
    cause is chained). It is also a `redis.ConnectionError` so that code which caught
    redis-py's errors around registry calls before this class existed keeps working.
    """

    def __init__(self, prefix: str, cause: BaseException) -> None:
        super().__init__(f"registry {prefix!r}: Redis unreachable: {cause}")
        self.prefix = prefix
        self.cause = cause


class ServiceUnavailable(RegistryError):
    """A downstream service cannot be called now: its breaker is open, or no instance is UP.

    Raised *instead of* calling the downstream, so it spends no retry budget. A worker
    parks the task in its unschedulable queue and moves it back at `retry_at` (a wall
    clock time, seconds since the epoch, because it comes from a breaker's `opened_at`,
    which workers share through Redis), when the breaker will let a trial call through.
    """

    retriable = True

    def __init__(self, service: str, retry_at: float, reason: str) -> None:
        super().__init__(f"service {service!r} unavailable until {retry_at:.3f}: {reason}")
        self.service = service
        self.retry_at = retry_at
        self.reason = reason


class NoInstances(ServiceUnavailable):
    """No instance of the service is UP in the local copy of the registry."""
