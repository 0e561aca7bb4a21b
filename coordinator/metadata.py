"""What a member tells the leader in JoinGroup: identity, capacity, labels and what it holds.

The blob travels through the broker as the member's protocol metadata, so it is versioned
(``v``), never empty, and decoded strictly: a leader must not assign work from garbage.
Newer encoders may add keys; this decoder ignores keys it does not know so that a rolling
upgrade does not stop an older leader from assigning.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped, unused-ignore]

from ringleader.coordinator.errors import RingleaderError

SCHEMA_VERSION = 1
PROTOCOLS = ("eager", "cooperative")


class MetadataDecodeError(RingleaderError, ValueError):
    """A member metadata blob is not a valid encoding of ``MemberMetadata``."""


class Labels(Mapping[str, str]):
    """An immutable, hashable str->str mapping, kept sorted by key."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        d: dict[str, str] = {}
        for k, v in pairs:
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"labels must map str to str, got {k!r}: {v!r}")
            d[k] = v
        self._items: tuple[tuple[str, str], ...] = tuple(sorted(d.items()))

    def __getitem__(self, key: str) -> str:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return self._items

    def __repr__(self) -> str:
        return f"Labels({dict(self._items)!r})"


@dataclass(frozen=True)
class MemberMetadata:
    """A member's self-description; hashable, so assignors can use it as a key.

    ``held``/``held_generation`` are the partitions of the last generation the member applied
    (``-1``/``()`` when none); ``log_offset`` is how far it has read the assignment log.
    ``labels`` accepts any mapping and is stored as an immutable ``Labels``.

    For cooperative rebalancing (``coordinator.cooperative``): ``protocol`` is the rebalance
    protocol the member speaks ("cooperative" or "eager"); ``owned`` the partitions it still
    owns while it joins (kept from the last generation, or being released), which nobody else
    may be given; ``busy`` how long (whole seconds) the oldest running task of each busy owned
    partition has run, so moves prefer idle partitions; ``instance_id`` its static
    ``group.instance.id``; ``leaving`` that it is shutting down and must be given nothing.
    Older encoders send none of these: their defaults describe an eager member.
    """

    worker_id: str
    capacity: int = 1
    labels: Mapping[str, str] = field(default_factory=Labels)
    zone: str | None = None
    version: str = ""
    held_generation: int = -1
    held: tuple[int, ...] = ()
    log_offset: int = -1
    protocol: str = "eager"
    owned: tuple[int, ...] = ()
    busy: tuple[tuple[int, int], ...] = ()
    instance_id: str | None = None
    leaving: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.worker_id, str) or not self.worker_id:
            raise ValueError("worker_id must be a non-empty string")
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise TypeError(f"capacity must be an int, got {self.capacity!r}")
        if self.capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {self.capacity}")
        if not isinstance(self.labels, Labels):
            object.__setattr__(self, "labels", Labels(self.labels))
        held = tuple(self.held)
        if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in held):
            raise ValueError(f"held must be non-negative partition numbers, got {held!r}")
        object.__setattr__(self, "held", held)
        owned = tuple(self.owned)
        if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in owned):
            raise ValueError(f"owned must be non-negative partition numbers, got {owned!r}")
        object.__setattr__(self, "owned", owned)
        busy = tuple(sorted((int(p), int(age)) for p, age in dict(self.busy).items()))
        object.__setattr__(self, "busy", busy)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")

    @property
    def cooperative(self) -> bool:
        return self.protocol == "cooperative"

    def busy_age(self, partition: int) -> int:
        """Seconds the oldest running task of `partition` has run (-1: none running)."""
        for p, age in self.busy:
            if p == partition:
                return age
        return -1

    def encode(self) -> bytes:
        """msgpack map with a schema version; never empty."""
        body: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "id": self.worker_id,
            "cap": self.capacity,
            "lab": dict(self.labels),
            "zone": self.zone,
            "ver": self.version,
            "hg": self.held_generation,
            "held": list(self.held),
            "lo": self.log_offset,
            "rp": self.protocol,
            "own": list(self.owned),
            "busy": [list(pa) for pa in self.busy],
            "iid": self.instance_id,
            "bye": self.leaving,
        }
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def decode(cls, data: bytes) -> MemberMetadata:
        """Decode a blob from ``encode``; raise ``MetadataDecodeError`` on anything else."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MetadataDecodeError(f"member metadata must be bytes, got {type(data).__name__}")
        if not data:
            raise MetadataDecodeError("member metadata is empty")
        try:
            body = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
        except (ValueError, TypeError, OverflowError) as e:  # msgpack's errors are ValueErrors
            raise MetadataDecodeError(f"member metadata is not msgpack: {e}") from e
        if not isinstance(body, dict):
            raise MetadataDecodeError(f"member metadata must be a map, got {type(body).__name__}")
        v = body.get("v")
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise MetadataDecodeError(f"member metadata has no valid schema version: {v!r}")
        try:
            worker_id = _req(body, "id", str)
            capacity = _req(body, "cap", int)
            labels = _req(body, "lab", dict)
            zone = body.get("zone")
            if zone is not None and not isinstance(zone, str):
                raise MetadataDecodeError(f"zone must be a string or nil, got {zone!r}")
            version = _req(body, "ver", str)
            held_generation = _req(body, "hg", int)
            held = _req(body, "held", list)
            log_offset = _req(body, "lo", int)
            coop = _cooperative_fields(body)
            return cls(
                worker_id=worker_id,
                capacity=capacity,
                labels=Labels(labels),
                zone=zone,
                version=version,
                held_generation=held_generation,
                held=tuple(held),
                log_offset=log_offset,
                **coop,
            )
        except MetadataDecodeError:
            raise
        except (TypeError, ValueError) as e:
            raise MetadataDecodeError(f"member metadata is invalid: {e}") from e


def _req(body: Mapping[str, Any], key: str, typ: type) -> Any:
    if key not in body:
        raise MetadataDecodeError(f"member metadata lacks field {key!r}")
    val = body[key]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        raise MetadataDecodeError(
            f"member metadata field {key!r} must be {typ.__name__}, got {type(val).__name__}"
        )
    return val


def _cooperative_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The cooperative-rebalancing keys, each optional (an older member sends none)."""
    out: dict[str, Any] = {}
    rp = body.get("rp", "eager")
    if rp not in PROTOCOLS:
        raise MetadataDecodeError(f"member metadata field 'rp' must be one of {PROTOCOLS}")
    out["protocol"] = rp
    own = body.get("own", [])
    busy = body.get("busy", [])
    if not isinstance(own, list) or not isinstance(busy, list):
        raise MetadataDecodeError("member metadata fields 'own' and 'busy' must be lists")
    if not all(isinstance(pa, list) and len(pa) == 2 for pa in busy):
        raise MetadataDecodeError("member metadata field 'busy' must hold [partition, age] pairs")
    out["owned"] = tuple(own)
    out["busy"] = tuple((pa[0], pa[1]) for pa in busy)
    iid = body.get("iid")
    if iid is not None and not isinstance(iid, str):
        raise MetadataDecodeError(f"instance id must be a string or nil, got {iid!r}")
    out["instance_id"] = iid
    bye = body.get("bye", False)
    if not isinstance(bye, bool):
        raise MetadataDecodeError("member metadata field 'bye' must be a boolean")
    out["leaving"] = bye
    return out
