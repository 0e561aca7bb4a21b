"""Topic names of a namespace and the key → partition function.

The partition of a key is Kafka's default partitioner (murmur2, positive, modulo the partition
count) so a key lands on the same partition whichever Kafka client computes it; never Python's
`hash()`, which is salted per process.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringleader.worker.lanes import LaneTopics


@dataclass(frozen=True, slots=True)
class Topics:
    tasks: str
    assignments: str
    dead_letter: str
    events: str
    batches: str

    @property
    def lanes(self) -> LaneTopics:
        """The task topic of each priority level (`<ns>.tasks`, `.tasks.high`, `.tasks.low`)."""
        return LaneTopics(self.tasks)

    def all(self) -> tuple[str, ...]:
        logs = (self.assignments, self.dead_letter, self.events, self.batches)
        return self.lanes.all() + logs


# The longest suffix bounds the namespace length (Kafka topic names are at most 249 characters).
_SUFFIXES = (".tasks", ".assignments", ".dead-letter", ".events", ".batches")
_LONGEST = max(len(s) for s in (*_SUFFIXES, ".tasks.high", ".tasks.low"))
MAX_NAMESPACE_LEN = 249 - _LONGEST


def topics(namespace: str) -> Topics:
    """The topics of one namespace: `<ns>.tasks`, `.assignments`, `.dead-letter`, ..."""
    return Topics(*(namespace + s for s in _SUFFIXES))


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    mask = 0xFFFFFFFF
    h = (seed ^ length) & mask
    n4 = length // 4
    for i in range(n4):
        i4 = i * 4
        k = int.from_bytes(data[i4 : i4 + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    rest = length % 4
    tail = n4 * 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str | bytes | None, partitions: int) -> int | None:
    """Partition of `key` among `partitions`; None for no key (the producer spreads those)."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if key is None:
        return None
    data = key.encode() if isinstance(key, str) else bytes(key)
    return (murmur2(data) & 0x7FFFFFFF) % partitions
