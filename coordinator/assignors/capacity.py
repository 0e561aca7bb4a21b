"""Capacity- and label-aware assignor, in the manner of the kube-scheduler.

For each partition: *filter* the members that can take it (capacity > 0 and every required
label matches; a required ``zone`` also matches ``MemberMetadata.zone``), then *score* them by
free capacity and pick the best. Capacity is a weight by default: a member with capacity 4
gets about four times the partitions of one with capacity 1. The score is how far a member is
below its weighted share (partitions x capacity / total capacity): the one furthest below
wins, ties to the first member in order, so no member ends more than one partition above its
share (a load/capacity score favours the largest member: capacities 1,1,1,4 and 3 partitions
put all three on the 4). With ``capacity_is_limit=True``
capacity is a hard number of partitions.

Partitions are placed most-constrained first so a scarce member is not filled with work any
member could do. A partition no member can take stays unassigned; the reason is reported in
``AssignmentPlan.unassigned`` (and ``self.unassigned`` after ``assign``). Not sticky.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from ringleader.coordinator.assignors.base import AssignmentPlan, clean_partitions, member_order
from ringleader.coordinator.metadata import MemberMetadata

Requirement = tuple[tuple[str, str], ...]


def _fits(meta: MemberMetadata, req: Requirement) -> bool:
    for key, want in req:
        have = meta.labels.get(key)
        if have is None and key == "zone":
            have = meta.zone
        if have != want:
            return False
    return True


class CapacityAssignor:
    name = "capacity"

    def __init__(
        self,
        requirements: Mapping[int, Mapping[str, str]] | None = None,
        *,
        capacity_is_limit: bool = False,
    ) -> None:
        reqs: dict[int, Requirement] = {}
        for p, labels in (requirements or {}).items():
            if isinstance(p, bool) or not isinstance(p, int) or p < 0:
                raise ValueError(f"requirements keys must be partition numbers, got {p!r}")
            reqs[p] = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        self.requirements = reqs
        self.capacity_is_limit = capacity_is_limit
        self.unassigned: dict[int, str] = {}

    def assign(
        self, members: Mapping[str, MemberMetadata], partitions: Sequence[int]
    ) -> dict[str, list[int]]:
        """Owners per member; partitions left out are in ``self.unassigned`` afterwards."""
        result = self.plan(members, partitions)
        self.unassigned = result.unassigned
        return result.owners

    def plan(
        self, members: Mapping[str, MemberMetadata], partitions: Sequence[int]
    ) -> AssignmentPlan:
        order = member_order(members)
        metas = [members[mid] for mid in order]
        caps = [m.capacity for m in metas]
        load = [0] * len(order)
        wanted = len(clean_partitions(partitions))
        total = sum(c for c in caps if c > 0)

        def score(i: int) -> int:
            # load - share, scaled by `total` to stay in integers (exact ties).
            return load[i] * total - wanted * caps[i]

        owners: dict[str, list[int]] = {mid: [] for mid in order}
        unassigned: dict[int, str] = {}

        by_req: dict[Requirement, list[int]] = {}
        for p in clean_partitions(partitions):
            by_req.setdefault(self.requirements.get(p, ()), []).append(p)
        feasible = {
            req: [i for i, m in enumerate(metas) if m.capacity > 0 and _fits(m, req)]
            for req in by_req
        }
        # Lazy heaps of (score when pushed, member index); loads only grow, so a stale entry
        # under-estimates and is re-pushed with its current score when it surfaces.
        heaps = {req: [(score(i), i) for i in idx] for req, idx in feasible.items()}
        for h in heaps.values():
            heapq.heapify(h)

        work = sorted(
            ((len(feasible[req]), p, req) for req, ps in by_req.items() for p in ps),
        )
        for _, p, req in work:
            heap = heaps[req]
            chosen = -1
            while heap:
                pushed, i = heap[0]
                if self.capacity_is_limit and load[i] >= caps[i]:
                    heapq.heappop(heap)
                    continue
                current = score(i)
                if current != pushed:
                    heapq.heapreplace(heap, (current, i))
                    continue
                chosen = i
                load[i] += 1
                heapq.heapreplace(heap, (score(i), i))
                break
            if chosen < 0:
                unassigned[p] = self._why(req, bool(feasible[req]))
            else:
                owners[order[chosen]].append(p)
        for owned in owners.values():
            owned.sort()
        return AssignmentPlan(owners, dict(sorted(unassigned.items())))

    @staticmethod
    def _why(req: Requirement, had_candidates: bool) -> str:
        wanted = dict(req) or "no labels"
        if had_candidates:
            return f"every member matching {wanted} is at capacity"
        return f"no member with capacity matches {wanted}"
