"""What the leader decides for a generation: eager or cooperative, and which partitions wait.

`LeaderPlanner.decide` turns the members of a JoinGroup into the `Assignment` to commit.
Cooperative (`coordinator.cooperative.plan`) when every member speaks it, or when any member
still owns partitions (a group part-way through a rolling change must never give an owned
partition to somebody else); otherwise the configured eager assignor, as before.

It also keeps Connect's scheduled rebalance delay for static members: when a worker that was
a static member of the last committed generation is missing, its partitions are held back
for `scheduled_rebalance_delay` from when this leader first noticed, and `followup` tells the
membership when to rebalance again so they move once the delay is over. The clock comes in
as an argument; the memory is this leader's (a new leader gives them out at once).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from ringleader.coordinator import cooperative
from ringleader.coordinator.assignment import Assignment
from ringleader.coordinator.assignors import Assignor
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.settings import MemberSettings

log = logging.getLogger("ringleader.coordinator.member")


@dataclass(frozen=True)
class Decision:
    assignment: Assignment
    followup: float | None  # seconds until held-back partitions are due to move


class LeaderPlanner:
    def __init__(self, assignor: Assignor, settings: MemberSettings, partitions: int) -> None:
        self._assignor = assignor
        self._settings = settings
        self._partitions = list(range(partitions))
        self._last: Assignment | None = None  # the newest committed generation read
        self._departed: dict[str, tuple[float, list[int]]] = {}  # worker -> (noticed, parts)

    def read(self, a: Assignment) -> None:
        """A committed generation was read (who had what, and who was static)."""
        if self._last is None or a.generation >= self._last.generation:
            self._last = a

    def decide(
        self,
        generation: int,
        leader_id: str,
        members: Mapping[str, bytes],
        decoded: Mapping[str, MemberMetadata],
        now: float,
    ) -> Decision:
        """`members`: every member id of the generation; `decoded`: those whose metadata
        could be read (the others get nothing)."""
        workers = {mid: m.worker_id for mid, m in decoded.items()}
        static = frozenset(mid for mid, m in decoded.items() if m.instance_id)
        coop = bool(decoded) and (
            all(m.cooperative for m in decoded.values()) or any(m.owned for m in decoded.values())
        )
        followup: float | None = None
        if not coop:
            owners = self._assignor.assign(decoded, self._partitions)
            full = {mid: sorted(owners.get(mid, [])) for mid in members}
            a = Assignment(generation, leader_id, full, "eager", workers, {}, static)
            return Decision(a, None)
        reserved, followup = self._reservations(decoded, now)
        previous = self._last.by_worker() if self._last is not None else {}
        for worker, (_, parts) in self._departed.items():
            previous.setdefault(worker, parts)
        target = None
        if self._assignor.name == "capacity":
            target = self._assignor.assign
        plan = cooperative.plan(
            decoded, self._partitions, previous=previous, reserved=reserved, target=target
        )
        full = {mid: plan.owners.get(mid, []) for mid in members}
        a = Assignment(generation, leader_id, full, plan.protocol, workers, plan.revoking, static)
        if plan.unassigned:
            log.info("generation %d leaves unassigned: %s", generation, plan.unassigned)
        return Decision(a, followup)

    def _reservations(
        self, decoded: Mapping[str, MemberMetadata], now: float
    ) -> tuple[dict[str, list[int]], float | None]:
        """Departed static workers still within the delay, and when the first one expires."""
        present = {m.worker_id for m in decoded.values()}
        last = self._last
        if last is not None:
            for mid, worker in last.workers.items():
                if mid in last.static and worker not in present and worker not in self._departed:
                    self._departed[worker] = (now, last.partitions_of(mid))
        delay = self._settings.scheduled_rebalance_delay
        reserved: dict[str, list[int]] = {}
        due: list[float] = []
        for worker, (noticed, parts) in list(self._departed.items()):
            left = noticed + delay - now
            if worker in present or left <= 0:
                # Back (it gets its own from `previous`), or too late: the others take them.
                if worker not in present:
                    log.info("static worker %s did not return in %.1fs", worker, delay)
                del self._departed[worker]
                continue
            reserved[worker] = parts
            due.append(left)
        return reserved, (min(due) if due else None)
