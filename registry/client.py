"""RegistryClient: a local copy of the registry, kept by deltas checked with the hashcode.

Sync protocol (Eureka's, with a stronger hashcode and an epoch):
1. first sync: full fetch (one MULTI read: epoch, seq, every instance, hashcode);
2. then: the log entries after our seq, read in one MULTI with the server's seq, epoch
   and hashcode; applied to a *candidate* copy;
3. the candidate's hashcode (status count + digest) must equal the server's. A mismatch,
   a gap (the capped log no longer covers our seq), a different epoch (Redis lost its
   data and started a new history) or a server seq behind ours forces a full fetch.

The published copy is swapped only after the check, so readers never see a wrong copy:
they see the last verified one. If Redis is unreachable, the client keeps serving that
copy and marks itself `stale` until a sync succeeds again.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import redis

from ringleader.registry import hashcode
from ringleader.registry.backend import Delta, RegistryBackend, Snapshot
from ringleader.registry.errors import DecodeError
from ringleader.registry.hashcode import Hashcode
from ringleader.registry.model import Instance, Status

log = logging.getLogger(__name__)


class SyncPath(enum.StrEnum):
    FULL = "full"  # full fetch
    DELTA = "delta"  # deltas applied, hashcode matched
    UNCHANGED = "unchanged"  # no new changes, hashcode matched
    FAILED = "failed"  # Redis unreachable: the last copy is kept, marked stale


@dataclass(frozen=True)
class SyncResult:
    path: SyncPath
    seq: int
    #: Why a full fetch happened: "initial", "gap", "mismatch", "epoch", "rewound",
    #: "decode"; or the error when the sync failed.
    reason: str = ""
    applied: int = 0


@dataclass(frozen=True)
class RegistryEvent:
    """What changed in the local copy with one sync (passed to watch callbacks)."""

    path: SyncPath
    added: list[Instance] = field(default_factory=list)
    updated: list[Instance] = field(default_factory=list)
    removed: list[Instance] = field(default_factory=list)


@dataclass(frozen=True)
class _Copy:
    """An immutable verified copy. terms: key -> sha256 term of the canonical encoding."""

    epoch: str
    seq: int
    instances: MappingProxyType[str, Instance]
    terms: MappingProxyType[str, int]
    counts: MappingProxyType[str, int]
    digest: int

    @property
    def hashcode(self) -> Hashcode:
        return Hashcode.of(self.counts, self.digest)


_EMPTY = _Copy("", -1, MappingProxyType({}), MappingProxyType({}), MappingProxyType({}), 0)


class InstanceSource(Protocol):
    """What a downstream caller needs from a registry view."""

    def up(self, service: str) -> Sequence[Instance]: ...


class RegistryClient:
    """Local, verified copy of one registry. Thread-safe; `sync()` may run in a thread."""

    def __init__(self, backend: RegistryBackend) -> None:
        self.backend = backend
        self._copy = _EMPTY
        self._stale = True
        self._sync_lock = threading.Lock()
        self._watchers: list[Callable[[RegistryEvent], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # reading the copy -------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        """True before the first successful sync and after a failed one."""
        return self._stale

    @property
    def seq(self) -> int:
        return self._copy.seq

    @property
    def hashcode(self) -> Hashcode:
        return self._copy.hashcode

    def instances(self, service: str | None = None) -> list[Instance]:
        c = self._copy
        found = [i for i in c.instances.values() if service is None or i.service == service]
        return sorted(found, key=lambda i: i.key)

    def up(self, service: str) -> list[Instance]:
        return [i for i in self.instances(service) if i.status is Status.UP]

    def services(self) -> list[str]:
        return sorted({i.service for i in self._copy.instances.values()})

    def as_dict(self) -> dict[str, Instance]:
        return dict(self._copy.instances)

    def watch(self, callback: Callable[[RegistryEvent], None]) -> Callable[[], None]:
        """Call `callback` after every sync that changed the copy. Returns an unsubscribe."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    # syncing ----------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        with self._sync_lock:
            try:
                result, event = self._sync_once()
            except (redis.RedisError, OSError, DecodeError) as e:
                # Any failure keeps the last verified copy: never publish a partial one.
                if not self._stale:
                    log.warning(
                        "registry %s unreachable, serving stale copy: %s",
                        self.backend.keys.prefix,
                        e,
                    )
                self._stale = True
                return SyncResult(SyncPath.FAILED, self._copy.seq, reason=str(e))
            self._stale = False
        if event is not None:
            for cb in list(self._watchers):
                cb(event)
        return result

    def _sync_once(self) -> tuple[SyncResult, RegistryEvent | None]:
        old = self._copy
        if old.seq < 0:
            return self._full(old, "initial")
        delta = self.backend.changes_since(old.seq)
        # An empty history (no epoch yet, seq 0) is the start of every history, so a copy
        # of it may follow the first epoch by deltas; any other epoch change means Redis
        # lost its data and numbers its changes anew.
        if delta.epoch != old.epoch and (old.epoch or old.seq != 0):
            return self._full(old, "epoch")
        if delta.seq < old.seq:
            return self._full(old, "rewound")
        expected = delta.seq - old.seq
        if len(delta.changes) != expected or (
            delta.changes and delta.changes[0].seq != old.seq + 1
        ):
            return self._full(old, "gap")
        try:
            candidate, event = _apply(old, delta)
        except DecodeError as e:
            log.warning("undecodable change in registry log (%s); full fetch", e)
            return self._full(old, "decode")
        if candidate.hashcode != delta.hashcode:
            log.info(
                "registry %s hashcode mismatch after deltas (local %s, server %s): full fetch",
                self.backend.keys.prefix,
                candidate.hashcode,
                delta.hashcode,
            )
            return self._full(old, "mismatch")
        self._copy = candidate
        if expected == 0:
            return SyncResult(SyncPath.UNCHANGED, candidate.seq), None
        return SyncResult(SyncPath.DELTA, candidate.seq, applied=expected), event

    def _full(self, old: _Copy, reason: str) -> tuple[SyncResult, RegistryEvent | None]:
        snap = self.backend.snapshot()
        new = _from_snapshot(snap)
        if new.hashcode != snap.hashcode:
            # The snapshot is one MULTI, so this means the data itself is inconsistent
            # (a writer bypassed the scripts). Publish what is there, loudly.
            log.error(
                "registry %s: snapshot disagrees with its own hashcode (%s vs %s)",
                self.backend.keys.prefix,
                new.hashcode,
                snap.hashcode,
            )
        self._copy = new
        event = _diff(old, new)
        changed = bool(event.added or event.updated or event.removed)
        return SyncResult(SyncPath.FULL, new.seq, reason=reason), event if changed else None

    # background loop --------------------------------------------------------------------

    def start(self, interval: float = 1.0) -> None:
        """Sync every `interval` seconds in a daemon thread until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                self.sync()
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, name="registry-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _from_snapshot(snap: Snapshot) -> _Copy:
    instances: dict[str, Instance] = {}
    terms: dict[str, int] = {}
    counts: dict[str, int] = {}
    digest = 0
    for key, enc in snap.instances.items():
        inst = Instance.decode(enc)
        t = hashcode.term(enc)
        instances[key], terms[key] = inst, t
        counts[inst.status.value] = counts.get(inst.status.value, 0) + 1
        digest = hashcode.add(digest, t)
    return _Copy(
        snap.epoch,
        snap.seq,
        MappingProxyType(instances),
        MappingProxyType(terms),
        MappingProxyType(counts),
        digest,
    )


def _apply(old: _Copy, delta: Delta) -> tuple[_Copy, RegistryEvent]:
    instances = dict(old.instances)
    terms = dict(old.terms)
    counts = dict(old.counts)
    digest = old.digest
    before: dict[str, Instance | None] = {}
    for ch in delta.changes:
        before.setdefault(ch.key, old.instances.get(ch.key))
        prev = instances.pop(ch.key, None)
        if prev is not None:
            counts[prev.status.value] -= 1
            digest = hashcode.sub(digest, terms.pop(ch.key))
        if ch.op == "put":
            inst = Instance.decode(ch.encoded)
            t = hashcode.term(ch.encoded)
            instances[ch.key], terms[ch.key] = inst, t
            counts[inst.status.value] = counts.get(inst.status.value, 0) + 1
            digest = hashcode.add(digest, t)
        elif ch.op != "del":
            raise DecodeError(f"unknown log op {ch.op!r}")
    event = RegistryEvent(SyncPath.DELTA)
    for key, was in before.items():
        now = instances.get(key)
        if was is None and now is not None:
            event.added.append(now)
        elif was is not None and now is None:
            event.removed.append(was)
        elif was is not None and now is not None and was != now:
            event.updated.append(now)
    new = _Copy(
        delta.epoch,
        delta.seq,
        MappingProxyType(instances),
        MappingProxyType(terms),
        MappingProxyType({s: n for s, n in counts.items() if n > 0}),
        digest,
    )
    return new, event


def _diff(old: _Copy, new: _Copy) -> RegistryEvent:
    event = RegistryEvent(SyncPath.FULL)
    for key, inst in new.instances.items():
        if key not in old.instances:
            event.added.append(inst)
        elif old.terms[key] != new.terms[key]:
            event.updated.append(inst)
    event.removed.extend(i for k, i in old.instances.items() if k not in new.instances)
    return event
