"""The registry's data model: an instance of a service, its status and its lease.

An `Instance` is what clients replicate and what the reconcile hashcode covers. Its
lease *times* (`Lease`: last renewal, expiry) are deliberately not part of it: renewals
are the most frequent write by far (every instance, every few seconds) and must not
churn the change log or the digest -- Eureka keeps `lastRenewalTimestamp` out of its
delta and hashcode for the same reason. The lease *duration* is part of the instance.

The encoding is canonical (a msgpack array in a fixed field order, labels sorted), so
`encode(decode(b)) == b` and the content digest of an instance can be recomputed by any
client from the decoded value.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]  # ships no type information

from ringleader.registry.errors import DecodeError, InvalidInstance

#: Version tag leading every encoded instance; bump when the layout changes.
ENCODING_VERSION = 1

_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MAX_ID = 255
_MAX_TEXT = 1024


class Status(enum.StrEnum):
    """Eureka's instance statuses."""

    UP = "UP"
    DOWN = "DOWN"
    STARTING = "STARTING"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"


@dataclass(frozen=True)
class Metadata:
    """What schedulers and callers filter on. `labels` is kept sorted by key."""

    labels: tuple[tuple[str, str], ...] = ()
    zone: str = ""
    capacity: int = 1
    version: str = ""

    @classmethod
    def of(
        cls,
        labels: Mapping[str, str] | None = None,
        zone: str = "",
        capacity: int = 1,
        version: str = "",
    ) -> Metadata:
        return cls(tuple(sorted((labels or {}).items())), zone, capacity, version)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def __post_init__(self) -> None:
        keys = [k for k, _ in self.labels]
        for k, v in self.labels:
            if not isinstance(k, str) or not isinstance(v, str) or not k:
                raise InvalidInstance(
                    f"label {k!r}={v!r}: keys and values must be str, key non-empty"
                )
        if keys != sorted(set(keys)):
            raise InvalidInstance(f"labels must be sorted with unique keys, got {keys}")
        if not isinstance(self.zone, str) or len(self.zone) > _MAX_TEXT:
            raise InvalidInstance(f"zone must be a str of at most {_MAX_TEXT} chars")
        if not isinstance(self.version, str) or len(self.version) > _MAX_TEXT:
            raise InvalidInstance(f"version must be a str of at most {_MAX_TEXT} chars")
        if type(self.capacity) is not int or self.capacity < 0:
            raise InvalidInstance(f"capacity must be a non-negative int, got {self.capacity!r}")


@dataclass(frozen=True)
class Instance:
    """One registered instance of a service."""

    service: str
    instance_id: str
    address: str
    status: Status = Status.UP
    metadata: Metadata = field(default_factory=Metadata)
    lease_duration: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.service, str) or not _SERVICE_RE.match(self.service):
            raise InvalidInstance(f"service name {self.service!r} must match {_SERVICE_RE.pattern}")
        if (
            not isinstance(self.instance_id, str)
            or not self.instance_id
            or len(self.instance_id) > _MAX_ID
            or not self.instance_id.isprintable()
        ):
            raise InvalidInstance(
                f"instance id {self.instance_id!r} must be 1..{_MAX_ID} printable chars"
            )
        if not isinstance(self.address, str) or len(self.address) > _MAX_TEXT:
            raise InvalidInstance(f"address must be a str of at most {_MAX_TEXT} chars")
        if not isinstance(self.status, Status):
            try:
                object.__setattr__(self, "status", Status(self.status))
            except ValueError as e:
                raise InvalidInstance(f"unknown status {self.status!r}") from e
        if not isinstance(self.metadata, Metadata):
            raise InvalidInstance("metadata must be a Metadata")
        if (
            isinstance(self.lease_duration, bool)
            or not isinstance(self.lease_duration, int | float)
            or not math.isfinite(self.lease_duration)
            or self.lease_duration <= 0
        ):
            raise InvalidInstance(f"lease_duration must be > 0, got {self.lease_duration!r}")
        object.__setattr__(self, "lease_duration", float(self.lease_duration))

    @property
    def key(self) -> str:
        """The instance's field name in Redis: `service/instance_id` (services have no '/')."""
        return instance_key(self.service, self.instance_id)

    def with_status(self, status: Status) -> Instance:
        return Instance(
            self.service, self.instance_id, self.address, status, self.metadata, self.lease_duration
        )

    def encode(self) -> bytes:
        """Canonical msgpack encoding: a fixed-order array, labels sorted."""
        m = self.metadata
        packed: bytes = msgpack.packb(
            [
                ENCODING_VERSION,
                self.service,
                self.instance_id,
                self.address,
                self.status.value,
                [list(kv) for kv in m.labels],
                m.zone,
                m.capacity,
                m.version,
                self.lease_duration,
            ],
            use_bin_type=True,
        )
        return packed

    @classmethod
    def decode(cls, data: bytes) -> Instance:
        """Strict inverse of `encode`: wrong types, lengths or trailing bytes raise DecodeError."""
        try:
            obj: Any = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
            raise DecodeError(f"not a msgpack instance: {e}") from e
        if not isinstance(obj, list) or len(obj) != 10:
            raise DecodeError(f"expected a 10-element array, got {type(obj).__name__}")
        ver, service, iid, address, status, labels, zone, capacity, version, lease = obj
        if ver != ENCODING_VERSION:
            raise DecodeError(f"unsupported encoding version {ver!r}")
        for name, v in (
            ("service", service),
            ("id", iid),
            ("address", address),
            ("status", status),
            ("zone", zone),
            ("version", version),
        ):
            if not isinstance(v, str):
                raise DecodeError(f"{name} must be a string, got {type(v).__name__}")
        if type(capacity) is not int or type(lease) is not float:
            raise DecodeError("capacity must be int and lease_duration float")
        if not isinstance(labels, list) or not all(
            isinstance(kv, list) and len(kv) == 2 and all(isinstance(x, str) for x in kv)
            for kv in labels
        ):
            raise DecodeError("labels must be a list of [str, str] pairs")
        try:
            inst = cls(
                service,
                iid,
                address,
                Status(status),
                Metadata(tuple((k, v) for k, v in labels), zone, capacity, version),
                lease,
            )
        except (InvalidInstance, ValueError) as e:
            raise DecodeError(f"invalid instance: {e}") from e
        return inst


@dataclass(frozen=True)
class Lease:
    """Lease times of one instance, as the backend holds them (not replicated)."""

    duration: float
    expires_at: float

    @property
    def last_renewal(self) -> float:
        return self.expires_at - self.duration


def instance_key(service: str, instance_id: str) -> str:
    return f"{service}/{instance_id}"


def split_key(key: str) -> tuple[str, str]:
    service, sep, iid = key.partition("/")
    if not sep:
        raise DecodeError(f"malformed instance key {key!r}")
    return service, iid
