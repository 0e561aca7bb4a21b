"""Priority levels as lanes: a task topic per level, co-partitioned with `<ns>.tasks`.

A task's priority picks its level: above 0 goes to `<ns>.tasks.high`, below 0 to
`<ns>.tasks.low`, 0 (the default) to `<ns>.tasks`. The three topics have the same partition
count and the group assigns partition numbers, so the member that owns partition p fetches p
of every level and can hold a lower level back while a higher one has tasks waiting on the
broker (`FetchGate`). Within a level, a larger priority runs first among fetched tasks.

A lane is one partition of one level's topic, packed in an int (`level * LANE_STRIDE +
partition`). The default level is 0, so its lanes are its partition numbers: the partition
book, the scheduling queue, the committer and the delayed set key on lanes unchanged, and a
namespace that never uses priorities reads and writes exactly what it did before.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "LANE_STRIDE",
    "FetchGate",
    "LaneTopics",
    "Level",
    "busiest",
    "lane",
    "lanes_of",
    "level_for",
    "level_of",
    "partition_of",
    "partitions_of",
    "priority_value",
]

# Above any partition count a worker accepts (WorkerSettings caps partitions at 100,000).
LANE_STRIDE = 100_000


class Level(IntEnum):
    """A priority level; the value is its lane prefix (NORMAL is 0: lane == partition)."""

    NORMAL = 0
    HIGH = 1
    LOW = 2


# Fetch order: a level is held back while any level of a higher rank has lag.
RANK = {Level.LOW: 0, Level.NORMAL: 1, Level.HIGH: 2}
_NAMES = {"high": 1, "normal": 0, "low": -1}
SUFFIX = {Level.NORMAL: "", Level.HIGH: ".high", Level.LOW: ".low"}


def level_for(priority: int) -> Level:
    return Level.HIGH if priority > 0 else Level.LOW if priority < 0 else Level.NORMAL


def priority_value(text: str) -> int:
    """A priority given as text (the CLI): an int, or high / normal / low (1 / 0 / -1)."""
    named = _NAMES.get(text.strip().lower())
    if named is not None:
        return named
    try:
        return int(text)
    except ValueError:
        allowed = "an integer or one of high, normal, low"
        raise ValueError(f"priority must be {allowed}; got {text!r}") from None


def lane(level: Level, partition: int) -> int:
    return int(level) * LANE_STRIDE + partition


def partition_of(lane_: int) -> int:
    return lane_ % LANE_STRIDE


def level_of(lane_: int) -> Level:
    return Level(lane_ // LANE_STRIDE)


def lanes_of(partitions: Iterable[int]) -> list[int]:
    """Every level's lane of each partition, default level first."""
    ps = list(partitions)
    return [lane(level, p) for level in Level for p in ps]


def partitions_of(lanes: Iterable[int]) -> list[int]:
    """The partitions of these lanes, each once, ascending."""
    return sorted({partition_of(ln) for ln in lanes})


def busiest(seconds: Mapping[int, int]) -> dict[int, int]:
    """Per lane seconds (of the oldest running task) folded to per partition, the most."""
    out: dict[int, int] = {}
    for ln, secs in seconds.items():
        p = partition_of(ln)
        out[p] = max(secs, out.get(p, 0))
    return out


@dataclass(frozen=True, slots=True)
class LaneTopics:
    """The task topic of each level of one namespace."""

    main: str

    def topic(self, level: Level) -> str:
        return self.main + SUFFIX[level]

    def of_lane(self, lane_: int) -> tuple[str, int]:
        """(topic, partition) of a lane."""
        return self.topic(level_of(lane_)), partition_of(lane_)

    def all(self) -> tuple[str, ...]:
        return tuple(self.topic(level) for level in Level)

    def levels(self) -> dict[str, Level]:
        """Topic name -> level (the fetcher's per-record lookup)."""
        return {self.topic(level): level for level in Level}


class FetchGate:
    """Which lanes the fetcher pauses. Pure: fed the number of tasks held in memory and the
    levels that have lag on the broker.

    - A lane is paused while a level above its own has lag (tasks not yet fetched), so a high
      task behind nothing waits for no normal backlog.
    - At `limit` tasks held, every level but the highest pauses, resuming below half of it;
      the highest level pauses only at twice the limit (resuming below the limit), so a high
      task is fetched even while a backlog fills the worker. Memory stays bounded by 2 x limit.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit = limit
        self._full = False
        self._over = False

    def paused(self, active: Sequence[int], held: int, lagging: Collection[Level]) -> set[int]:
        limit = self._limit
        if held >= limit:
            self._full = True
        elif held < limit // 2:
            self._full = False
        if held >= 2 * limit:
            self._over = True
        elif held < limit:
            self._over = False
        if self._over:
            return set(active)
        top = max((RANK[lv] for lv in lagging), default=-1)
        high = RANK[Level.HIGH]
        out: set[int] = set()
        for ln in active:
            rank = RANK[level_of(ln)]
            if rank < top or (self._full and rank < high):
                out.add(ln)
        return out
