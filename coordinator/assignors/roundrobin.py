"""The default assignor: Kafka Connect's eager round-robin over a ring of members."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ringleader.coordinator.assignors.base import clean_partitions, member_order
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.ring import CircularIterator


class RoundRobinAssignor:
    """Sort members, walk sorted partitions, hand each to ``ring.next()``.

    Counts differ by at most one. Not sticky: a join or leave may move most partitions.
    With no members nothing can be assigned and the result is empty.
    """

    name = "roundrobin"

    def assign(
        self, members: Mapping[str, MemberMetadata], partitions: Sequence[int]
    ) -> dict[str, list[int]]:
        order = member_order(members)
        owners: dict[str, list[int]] = {mid: [] for mid in order}
        if not order:
            return owners
        ring = CircularIterator(order)
        for p in clean_partitions(partitions):
            owners[ring.next()].append(p)
        return owners
