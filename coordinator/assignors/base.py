"""The assignor contract and helpers every assignor shares.

An assignor is a pure function of the group: member ids (as the broker named them) with
their metadata, and the task partitions. It returns every member id, each with a sorted list
of partitions (possibly empty), and must be deterministic for the same input whatever the
order of the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ringleader.coordinator.metadata import MemberMetadata


@runtime_checkable
class Assignor(Protocol):
    name: str

    def assign(
        self, members: Mapping[str, MemberMetadata], partitions: Sequence[int]
    ) -> dict[str, list[int]]: ...


@dataclass(frozen=True)
class AssignmentPlan:
    """An assignor's full answer: owners plus partitions it left unassigned, with why."""

    owners: dict[str, list[int]]
    unassigned: dict[int, str] = field(default_factory=dict)


def member_order(members: Mapping[str, MemberMetadata]) -> list[str]:
    """Member ids in a stable order: by worker id, then member id.

    Worker ids survive a rejoin while broker member ids do not, so ordering by worker id
    first keeps round-robin placement stable across rebalances.
    """
    return sorted(members, key=lambda mid: (members[mid].worker_id, mid))


def clean_partitions(partitions: Sequence[int]) -> list[int]:
    """Sorted, de-duplicated partitions; negative or non-int entries are refused."""
    for p in partitions:
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise ValueError(f"partitions must be non-negative ints, got {p!r}")
    return sorted(set(partitions))
