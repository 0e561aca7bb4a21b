"""The fetch loop's consumer and its lanes: which are assigned, which are paused, their lag.

`FetchGate` (pure, in `worker.lanes`) decides which lanes to hold back from the tasks held in
memory and the levels with lag; this applies its decision to the confluent-kafka Consumer and
works out the lag from what the loop has seen and the watermarks librdkafka caches from its
fetches (no request of its own). Only the poll thread calls it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from ringleader import logs
from ringleader.worker.lanes import FetchGate, LaneTopics, Level, level_of

log = logging.getLogger("ringleader.worker")

# How often the lag of the priority levels is looked at (seconds): a high task behind a
# normal backlog waits about this long more before the normal lanes are paused.
LAG_EVERY = 0.05
# A lane behind its watermark that makes no progress this long no longer holds others back.
LAG_STALE = 2.0


def fetch_consumer(rk: dict[str, Any]) -> Consumer:
    """The worker's consumer, on top of the cluster's librdkafka settings `rk`: it reads only
    the partitions it is given (assign()) and never commits (the OffsetCommitter does)."""
    return Consumer(
        {
            **rk,
            **logs.librdkafka(),
            # librdkafka insists on a group id; with assign() it never joins or commits.
            "group.id": f"ringleader-worker-fetch-{os.urandom(6).hex()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "queued.max.messages.kbytes": 32768,
        }
    )


class LaneFlow:
    def __init__(
        self,
        consumer: Consumer,
        lanes: LaneTopics,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._lanes = lanes
        self._gate = FetchGate(limit)
        self._clock = clock
        self._paused: set[int] = set()
        # Per lane: the next offset to fetch as far as the loop knows (where it was assigned
        # from, then one past the last record seen).
        self.next: dict[int, int] = {}
        self._behind: dict[int, tuple[int, float]] = {}  # lane -> (position, behind since)
        self._lagging: set[Level] = set()
        self._lag_due = 0.0

    def assign(self, started: Mapping[int, int | None]) -> None:
        """Fetch these lanes from these positions (None: from the start)."""
        tps = []
        for ln, pos in started.items():
            tps.append(self.tp(ln, OFFSET_BEGINNING if pos is None else pos))
            if pos is not None:
                self.next[ln] = pos
        if tps:
            self._consumer.incremental_assign(tps)

    def warm(self, timeout: float) -> None:
        """Read the lane topics' metadata once, before the first assignment: a consumer that
        has never asked for them takes 0.5-1 s from its first assign to its first record
        (measured on loopback; 6-10 ms once warmed), which a new worker would spend idle."""
        for level in Level:
            try:
                self._consumer.list_topics(self._lanes.topic(level), timeout=timeout)
            except KafkaException as e:  # the first fetch will ask again
                log.info("metadata of %s not read: %s", self._lanes.topic(level), e)
                return

    def unassign(self, lanes: Iterable[int]) -> None:
        gone = list(lanes)
        if not gone:
            return
        try:
            self._consumer.incremental_unassign([self.tp(ln) for ln in gone])
        except KafkaException as e:
            log.warning("unassign %s failed: %s", gone, e)
        for ln in gone:
            self._paused.discard(ln)
            self.next.pop(ln, None)
            self._behind.pop(ln, None)

    def control(self, active: list[int], held: int) -> None:
        """Pause the lanes the gate holds back (memory, a higher level's lag); resume the
        others."""
        want = self._gate.paused(active, held, self._levels_lagging(active))
        pause = want - self._paused
        resume = self._paused - want
        if pause:
            self._consumer.pause([self.tp(ln) for ln in sorted(pause)])
        if resume:
            self._consumer.resume([self.tp(ln) for ln in sorted(resume)])
        self._paused = want

    def _levels_lagging(self, active: list[int]) -> set[Level]:
        """The levels (above the lowest) with tasks on the broker not yet fetched."""
        now = self._clock()
        if now < self._lag_due:
            return self._lagging
        self._lag_due = now + LAG_EVERY
        lagging: set[Level] = set()
        for ln in active:
            level = level_of(ln)
            if level is Level.LOW or level in lagging:
                continue
            pos = self.next.get(ln)
            if pos is None:
                continue  # never committed, nothing seen yet: unknown, hold nothing back
            try:
                _, high = self._consumer.get_watermark_offsets(self.tp(ln), cached=True)
            except KafkaException:
                continue
            if high <= pos:
                self._behind.pop(ln, None)
                continue
            # Behind with no progress for LAG_STALE: a watermark not to trust (a broker that
            # reports it otherwise than Kafka does); never hold the lower levels for it.
            since = self._behind.get(ln)
            if since is None or since[0] != pos:
                self._behind[ln] = (pos, now)
            elif now - since[1] > LAG_STALE:
                continue
            lagging.add(level)
        self._lagging = lagging
        return lagging

    def tp(self, lane_: int, offset: int | None = None) -> TopicPartition:
        topic, partition = self._lanes.of_lane(lane_)
        if offset is None:
            return TopicPartition(topic, partition)
        return TopicPartition(topic, partition, offset)
