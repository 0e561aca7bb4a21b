"""Sticky assignor: keep partitions with their holder where balance allows, move the rest.

In the spirit of Kafka's incremental cooperative assignor (KIP-415): each member reports in
its metadata the partitions of the last generation it applied (``held``); the assignor keeps
as many of those as the balance constraint (counts differ by at most one) permits and moves
only what must move. When two members claim a partition, the claim from the newer
generation wins (the other member is stale), ties going to the first member in order.

Lost partitions may wait for their owner to come back (Connect's
``scheduled.rebalance.max.delay.ms``). A pure function cannot wait, so the *caller* decides
which departed workers are still within their delay (it has the clock) and passes their
partitions as ``reserved={worker_id: partitions}``; those stay unassigned and are reported in
``AssignmentPlan.unassigned``. A reservation for a worker that is present is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ringleader.coordinator.assignors.base import AssignmentPlan, clean_partitions, member_order
from ringleader.coordinator.metadata import MemberMetadata


class StickyAssignor:
    name = "sticky"

    def __init__(self) -> None:
        self.unassigned: dict[int, str] = {}

    def assign(
        self,
        members: Mapping[str, MemberMetadata],
        partitions: Sequence[int],
        *,
        reserved: Mapping[str, Sequence[int]] | None = None,
    ) -> dict[str, list[int]]:
        """Owners per member; partitions left out are in ``self.unassigned`` afterwards."""
        result = self.plan(members, partitions, reserved=reserved)
        self.unassigned = result.unassigned
        return result.owners

    def plan(
        self,
        members: Mapping[str, MemberMetadata],
        partitions: Sequence[int],
        *,
        reserved: Mapping[str, Sequence[int]] | None = None,
    ) -> AssignmentPlan:
        order = member_order(members)
        parts = clean_partitions(partitions)
        unassigned = _reservations(members, parts, reserved or {})
        assignable = [p for p in parts if p not in unassigned]
        if not order:
            for p in assignable:
                unassigned[p] = "no members"
            return AssignmentPlan({}, dict(sorted(unassigned.items())))
        kept = _claims(members, order, assignable)
        return AssignmentPlan(_balance(order, kept, assignable), dict(sorted(unassigned.items())))


def _reservations(
    members: Mapping[str, MemberMetadata], parts: list[int], reserved: Mapping[str, Sequence[int]]
) -> dict[int, str]:
    """Partitions held back for departed workers (a reservation for a present one is void)."""
    pset = set(parts)
    present = {m.worker_id for m in members.values()}
    out: dict[int, str] = {}
    for worker, ps in sorted(reserved.items()):
        if worker in present:
            continue
        for p in ps:
            if p in pset and p not in out:
                out[p] = f"reserved for departed worker {worker!r}"
    return out


def _claims(
    members: Mapping[str, MemberMetadata], order: list[str], assignable: list[int]
) -> dict[str, list[int]]:
    """What each member may keep of what it held: the newest generation's claim wins."""
    rank = {mid: i for i, mid in enumerate(order)}
    claim_order = sorted(order, key=lambda mid: (-members[mid].held_generation, rank[mid]))
    owner_of: dict[int, str] = {}
    open_set = set(assignable)
    for mid in claim_order:
        for p in members[mid].held:
            if p in open_set and p not in owner_of:
                owner_of[p] = mid
    kept: dict[str, list[int]] = {mid: [] for mid in order}
    for p in assignable:  # sorted, so every kept list is sorted
        holder = owner_of.get(p)
        if holder is not None:
            kept[holder].append(p)
    return kept


def _balance(
    order: list[str], kept: dict[str, list[int]], assignable: list[int]
) -> dict[str, list[int]]:
    """Counts differing by at most one, keeping as much of `kept` as that allows."""
    rank = {mid: i for i, mid in enumerate(order)}
    # The `extra` members allowed one more partition are those keeping the most: this
    # maximises the partitions that stay put.
    base, extra = divmod(len(assignable), len(order))
    by_kept = sorted(order, key=lambda mid: (-len(kept[mid]), rank[mid]))
    quota = {mid: base + (1 if i < extra else 0) for i, mid in enumerate(by_kept)}

    owners: dict[str, list[int]] = {}
    stay: set[int] = set()
    for mid in order:
        keep = kept[mid][: quota[mid]]
        owners[mid] = keep
        stay.update(keep)
    pool = iter([p for p in assignable if p not in stay])
    for mid in order:
        need = quota[mid] - len(owners[mid])
        if need:
            owners[mid] = sorted(owners[mid] + [next(pool) for _ in range(need)])
    return owners
