"""The registry in Redis: atomic writes with a bounded change log, and consistent reads.

Time: every write that touches a lease, and `evict`, takes `now` (seconds since the
epoch) from the caller instead of reading Redis' TIME. Atomicity does not need the
server's clock (the script runs as one unit whatever `now` says), and an injected clock
lets tests drive expiry and self-preservation deterministically. The cost is that
writers' clocks must roughly agree; lease durations (tens of seconds) dwarf NTP skew.
The clock is the wall clock (not a monotonic one) because lease expiries are stored in
Redis and compared by other processes.

Redis unreachable (refused, timed out, dropped) raises `RegistryUnavailable` (retriable)
from every method, so callers see one ringleader error rather than redis-py's.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis

from ringleader.errors import ConfigError
from ringleader.registry import hashcode, scripts
from ringleader.registry.errors import (
    ConcurrentUpdate,
    InstanceNotFound,
    RegistryUnavailable,
)
from ringleader.registry.hashcode import Hashcode
from ringleader.registry.model import Instance, Lease, Status, instance_key
from ringleader.registry.settings import RegistrySettings

log = logging.getLogger(__name__)

_CAS_ATTEMPTS = 16


_KEY_NAMES = ("inst", "meta", "counts", "digest", "seq", "log", "leases", "epoch", "selfpres")


class Keys:
    """Every key of one registry, namespaced by `prefix` (order matters: see scripts.py)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.inst, self.meta, self.counts, self.digest, self.seq = (
            f"{prefix}:{n}" for n in _KEY_NAMES[:5]
        )
        self.log, self.leases, self.epoch, self.selfpres = (f"{prefix}:{n}" for n in _KEY_NAMES[5:])

    def all(self) -> list[str]:
        return [f"{self.prefix}:{n}" for n in _KEY_NAMES]


@dataclass(frozen=True)
class Change:
    """One entry of the recent-changes log: `put` carries the encoding, `del` does not."""

    seq: int
    op: str
    key: str
    encoded: bytes
    why: str


@dataclass(frozen=True)
class Snapshot:
    """A whole registry read in one MULTI: consistent by construction."""

    epoch: str
    seq: int
    instances: dict[str, bytes]
    hashcode: Hashcode


@dataclass(frozen=True)
class Delta:
    """Changes after a sequence number, read in one MULTI with the seq and the hashcode."""

    epoch: str
    seq: int
    changes: list[Change]
    hashcode: Hashcode


@dataclass(frozen=True)
class Eviction:
    """What one `evict(now)` did. `paused` means self-preservation held eviction back."""

    paused: bool
    lapsed: int
    total: int
    evicted: int
    seq: int


@dataclass(frozen=True)
class SelfPreservation:
    """The flag clients read: is eviction paused, since when, and why."""

    paused: bool
    since: float | None
    lapsed: int
    total: int
    updated: float | None


P = ParamSpec("P")
R = TypeVar("R")


def _reachable(
    method: Callable[Concatenate[RegistryBackend, P], R],
) -> Callable[Concatenate[RegistryBackend, P], R]:
    """Turn redis-py's connection errors of a backend call into RegistryUnavailable."""

    def call(self: RegistryBackend, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except RegistryUnavailable:
            raise  # already translated (it is a redis.ConnectionError too)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise RegistryUnavailable(self.keys.prefix, e) from e

    functools.update_wrapper(call, method)
    return call


def _s(b: Any) -> str:
    return b.decode() if isinstance(b, bytes) else str(b)


def _hashcode(counts: dict[Any, Any], digest: Any) -> Hashcode:
    c = {_s(k): int(v) for k, v in counts.items()}
    return Hashcode(hashcode.status_summary(c), _s(digest) if digest else hashcode.ZERO_HEX)


class RegistryBackend:
    """Register, renew, change status, cancel, evict; snapshot and delta reads.

    `redis_client` must return bytes (decode_responses=False). Keys live under `prefix`.
    """

    def __init__(
        self,
        redis_client: redis.Redis[bytes],
        prefix: str,
        *,
        log_size: int = 1000,
        self_preservation_share: float = 0.15,
        self_preservation_min_leases: int = 10,
    ) -> None:
        if not prefix:
            raise ConfigError("registry key prefix must not be empty", setting="prefix")
        if log_size < 1:
            raise ConfigError("log_size must be >= 1", setting="log_size")
        if not 0.0 <= self_preservation_share <= 1.0:
            raise ConfigError(
                "self_preservation_share must be within [0, 1]", setting="self_preservation_share"
            )
        self.redis = redis_client
        self.keys = Keys(prefix)
        self.log_size = log_size
        self.self_preservation_share = self_preservation_share
        self.self_preservation_min_leases = self_preservation_min_leases
        self._put = redis_client.register_script(scripts.PUT)
        self._delete = redis_client.register_script(scripts.DELETE)
        self._renew = redis_client.register_script(scripts.RENEW)
        self._evict = redis_client.register_script(scripts.EVICT)

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> RegistryBackend:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.socket_timeout,
        )
        return cls(
            client,
            settings.prefix,
            log_size=settings.log_size,
            self_preservation_share=settings.self_preservation_share,
            self_preservation_min_leases=settings.self_preservation_min_leases,
        )

    # writes -----------------------------------------------------------------------------

    @_reachable
    def register(self, instance: Instance, now: float) -> int:
        """Upsert `instance` and start its lease at `now`. Returns the log seq of the change
        (the current seq if the content was already identical: then only the lease moves)."""
        enc = instance.encode()
        expiry = repr(now + instance.lease_duration)
        res = self._run_put(instance, enc, "*", expiry, "register")
        return int(res[1])

    @_reachable
    def renew(self, service: str, instance_id: str, now: float) -> bool:
        """Move the lease's expiry to `now + lease_duration`. False if the instance is not
        registered (cancelled, evicted, Redis lost it): the owner should register again."""
        ok = self._renew(keys=self.keys.all(), args=[instance_key(service, instance_id), repr(now)])
        return bool(ok)

    @_reachable
    def set_status(self, service: str, instance_id: str, status: Status) -> int:
        """Change the status with compare-and-set on the instance's digest term; the lease
        is untouched. Returns the log seq. Raises InstanceNotFound."""
        for _ in range(_CAS_ATTEMPTS):
            raw = self.redis.hget(self.keys.inst, instance_key(service, instance_id))
            if raw is None:
                raise InstanceNotFound(service, instance_id)
            old = bytes(raw)
            new = Instance.decode(old).with_status(status)
            res = self._run_put(
                new, new.encode(), hashcode.to_hex(hashcode.term(old)), "", "status"
            )
            if int(res[0]) == 1:
                return int(res[1])
        raise ConcurrentUpdate(f"set_status {service}/{instance_id}: too many concurrent writers")

    @_reachable
    def cancel(self, service: str, instance_id: str) -> bool:
        """Remove an instance (graceful shutdown). False if it was not registered."""
        seq = self._delete(
            keys=self.keys.all(),
            args=[instance_key(service, instance_id), self.log_size, "cancel", _epoch()],
        )
        return int(seq) > 0

    @_reachable
    def evict(self, now: float) -> Eviction:
        """Remove instances whose lease lapsed at or before `now` -- unless more than
        `self_preservation_share` of all leases have lapsed (and there are at least
        `self_preservation_min_leases`): then evict nothing and raise the paused flag.
        Run this about once per lease interval, so the lapsed leases are those of one
        window; eviction resumes by itself once renewals bring the share back down."""
        paused, was, lapsed, total, evicted, seq = (
            int(x)
            for x in self._evict(
                keys=self.keys.all(),
                args=[
                    repr(now),
                    repr(self.self_preservation_share),
                    self.self_preservation_min_leases,
                    self.log_size,
                    _epoch(),
                ],
            )
        )
        if paused and not was:
            log.warning(
                "registry %s: self-preservation ON, eviction paused: %d of %d leases lapsed "
                "(> %.0f%%)",
                self.keys.prefix,
                lapsed,
                total,
                100 * self.self_preservation_share,
            )
        elif was and not paused:
            log.warning(
                "registry %s: self-preservation OFF, eviction resumed: %d of %d leases lapsed",
                self.keys.prefix,
                lapsed,
                total,
            )
        return Eviction(bool(paused), lapsed, total, evicted, seq)

    def _run_put(
        self, inst: Instance, enc: bytes, expect: str, expiry: str, why: str
    ) -> Sequence[Any]:
        res: Sequence[Any] = self._put(
            keys=self.keys.all(),
            args=[
                inst.key,
                enc,
                hashcode.to_hex(hashcode.term(enc)),
                inst.status.value,
                repr(inst.lease_duration),
                expect,
                self.log_size,
                expiry,
                why,
                _epoch(),
            ],
        )
        return res

    # reads ------------------------------------------------------------------------------

    @_reachable
    def get(self, service: str, instance_id: str) -> Instance | None:
        raw = self.redis.hget(self.keys.inst, instance_key(service, instance_id))
        return None if raw is None else Instance.decode(bytes(raw))

    @_reachable
    def lease(self, service: str, instance_id: str) -> Lease | None:
        key = instance_key(service, instance_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.keys.inst, key)
        pipe.zscore(self.keys.leases, key)
        raw, score = pipe.execute()
        if raw is None or score is None:
            return None
        return Lease(Instance.decode(bytes(raw)).lease_duration, float(score))

    @_reachable
    def leases(self) -> dict[str, float]:
        """Every lease expiry by instance key (for `status` displays)."""
        return {
            _s(k): float(v) for k, v in self.redis.zrange(self.keys.leases, 0, -1, withscores=True)
        }

    @_reachable
    def snapshot(self) -> Snapshot:
        k = self.keys
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(k.epoch)
        pipe.get(k.seq)
        pipe.hgetall(k.inst)
        pipe.hgetall(k.counts)
        pipe.get(k.digest)
        epoch, seq, inst, counts, digest = pipe.execute()
        return Snapshot(
            _s(epoch) if epoch else "",
            int(seq or 0),
            {_s(key): bytes(v) for key, v in inst.items()},
            _hashcode(counts, digest),
        )

    @_reachable
    def changes_since(self, seq: int) -> Delta:
        """Log entries with seq > `seq` still in the log (the caller checks for a gap)."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(k.epoch)
        pipe.get(k.seq)
        pipe.xrange(k.log, min=f"{seq + 1}-0", max="+")
        pipe.hgetall(k.counts)
        pipe.get(k.digest)
        epoch, cur, entries, counts, digest = pipe.execute()
        changes = [
            Change(
                int(_s(eid).split("-", 1)[0]),
                _s(f[b"op"]),
                _s(f[b"k"]),
                bytes(f[b"v"]),
                _s(f[b"why"]),
            )
            for eid, f in entries
        ]
        return Delta(_s(epoch) if epoch else "", int(cur or 0), changes, _hashcode(counts, digest))

    @_reachable
    def hashcode(self) -> Hashcode:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(self.keys.counts)
        pipe.get(self.keys.digest)
        counts, digest = pipe.execute()
        return _hashcode(counts, digest)

    @_reachable
    def self_preservation(self) -> SelfPreservation:
        h = {_s(k): _s(v) for k, v in self.redis.hgetall(self.keys.selfpres).items()}
        return SelfPreservation(
            paused=h.get("paused") == "1",
            since=float(h["since"]) if "since" in h and h.get("paused") == "1" else None,
            lapsed=int(h.get("lapsed", 0)),
            total=int(h.get("total", 0)),
            updated=float(h["updated"]) if "updated" in h else None,
        )

    @_reachable
    def drop(self) -> None:
        """Delete every key of this registry (tests, `registry reset`)."""
        self.redis.delete(*self.keys.all())


def _epoch() -> str:
    # Only the first write of a fresh history stores it (SETNX).
    return uuid.uuid4().hex
