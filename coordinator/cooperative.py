"""The leader's cooperative plan (KIP-415 / cooperative-sticky): pure, no I/O, no clock.

Members keep what they own. Each member reports in its JoinGroup metadata the partitions it
still owns (``MemberMetadata.owned``: kept from the last generation, or still being released).
The leader computes a balanced, sticky *target*, and this generation gives each member only
the part of its target that nobody else owns: a partition that must move is revoked from its
owner alone now (it is in the owner's ``revoking`` list and in nobody's ``owners``), and given
to its new owner in the follow-up rebalance the owner starts once it has released it. So no
partition is ever owned by two members, and partitions that stay keep running.

The target keeps every member's owned partitions up to its quota (counts differ by at most
one; the members owning the most get the larger quotas, so the fewest partitions move), and a
member over its quota gives up its idle partitions first (``busy`` in its metadata), so a
running deployment is not what moves. Partitions nobody owns (a lost member's, a new topic's)
go at once to the member whose worker held them in the previous generation (a restarted static
member gets its own back), else round the ring of members with room.

A partition two members claim is given to neither and revoked from both (safer than trusting
either). ``reserved`` holds back a departed static worker's partitions (Connect's scheduled
rebalance delay; the caller has the clock and decides who is still within it); a reservation
is void for a partition a member owns and keeps, and holds at once for one its owner gives up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ringleader.coordinator.assignors.base import clean_partitions, member_order
from ringleader.coordinator.metadata import MemberMetadata
from ringleader.coordinator.ring import CircularIterator

COOPERATIVE = "cooperative"
EAGER = "eager"

# Computes a target from the members that may own partitions (a placement-aware assignor).
TargetFn = Callable[[Mapping[str, MemberMetadata], Sequence[int]], Mapping[str, Sequence[int]]]


@dataclass(frozen=True)
class CooperativePlan:
    """One generation's decision. Every member id is a key of `owners` and `target`."""

    owners: dict[str, list[int]]  # what each member owns in this generation
    target: dict[str, list[int]]  # where partitions are meant to end up
    revoking: dict[str, list[int]]  # per member (non-empty only): owned, to release now
    unassigned: dict[int, str] = field(default_factory=dict)  # owned by nobody now, and why
    protocol: str = COOPERATIVE  # what the generation runs: cooperative iff every member does

    @property
    def moves(self) -> int:
        """Partitions revoked from their owners by this plan."""
        return sum(len(ps) for ps in self.revoking.values())

    @property
    def settled(self) -> bool:
        """Nothing to revoke and every target met: no follow-up rebalance is needed."""
        return not self.revoking and self.owners == self.target


def plan(
    members: Mapping[str, MemberMetadata],
    partitions: Sequence[int],
    *,
    previous: Mapping[str, Sequence[int]] | None = None,
    reserved: Mapping[str, Sequence[int]] | None = None,
    target: TargetFn | None = None,
) -> CooperativePlan:
    """The plan for `members` (member id -> metadata) over `partitions`.

    `previous`: worker id -> partitions of the last committed generation (who had what);
    `reserved`: departed worker id -> partitions to hold back for it; `target`: compute the
    target with a placement-aware assignor instead of the sticky balance.
    """
    order = member_order(members)
    parts = clean_partitions(partitions)
    claimants = _claimants(members, order, set(parts))
    wanted = _reserved(members, parts, reserved or {})
    held_back = {p: why for p, why in wanted.items() if p not in claimants}
    eligible = [mid for mid in order if not members[mid].leaving]
    while True:
        assignable = [p for p in parts if p not in held_back]
        if target is not None:
            asked = target({m: members[m] for m in eligible}, assignable)
            goal = _checked(asked, eligible, assignable)
        else:
            goal = _sticky_target(members, eligible, claimants, assignable, previous or {})
        # A reserved partition its owner gives up is held back once released: hold it back now,
        # or the follow-up would take it from its new owner (and shrink every quota) again.
        released = {
            p: why
            for p, why in wanted.items()
            if p not in held_back and not _keeps(goal, claimants[p], p)
        }
        if not released:
            break
        held_back.update(released)
    goal = {mid: sorted(goal.get(mid, [])) for mid in order}
    owners = {mid: [p for p in goal[mid] if claimants.get(p, [mid]) == [mid]] for mid in order}
    revoking: dict[str, list[int]] = {}
    for mid in order:
        mine = set(owners[mid])
        lost = sorted({p for p in members[mid].owned if p in claimants} - mine)
        if lost:
            revoking[mid] = lost
    unassigned = dict(held_back)
    given = {p for ps in owners.values() for p in ps}
    for p in assignable:
        if p in given:
            continue
        who = claimants.get(p, [])
        if len(who) > 1:
            unassigned[p] = "claimed by several members: " + ", ".join(who)
        elif who:
            unassigned[p] = f"being released by {who[0]}"
        else:
            unassigned[p] = "no member may own it"
    everyone_coop = bool(order) and all(members[m].cooperative for m in order)
    return CooperativePlan(
        owners,
        goal,
        revoking,
        dict(sorted(unassigned.items())),
        COOPERATIVE if everyone_coop else EAGER,
    )


def _claimants(
    members: Mapping[str, MemberMetadata], order: list[str], pset: set[int]
) -> dict[int, list[str]]:
    """Who says it owns each partition (in member order)."""
    out: dict[int, list[str]] = {}
    for mid in order:
        for p in sorted(set(members[mid].owned)):
            if p in pset:
                out.setdefault(p, []).append(mid)
    return out


def _reserved(
    members: Mapping[str, MemberMetadata],
    parts: list[int],
    reserved: Mapping[str, Sequence[int]],
) -> dict[int, str]:
    """Partitions reserved for departed workers (a present worker's reservation is void)."""
    present = {m.worker_id for m in members.values()}
    pset = set(parts)
    out: dict[int, str] = {}
    for worker, ps in sorted(reserved.items()):
        if worker in present:
            continue
        for p in ps:
            if p in pset and p not in out:
                out[p] = f"reserved for departed worker {worker!r}"
    return out


def _keeps(goal: Mapping[str, Sequence[int]], who: list[str], p: int) -> bool:
    """Whether `p`'s only claimant keeps it in `goal` (so a reservation for it is void)."""
    return len(who) == 1 and p in goal.get(who[0], ())


def _checked(
    goal: Mapping[str, Sequence[int]], eligible: list[str], assignable: list[int]
) -> dict[str, list[int]]:
    """A target from an assignor, limited to eligible members and assignable partitions."""
    ok = set(assignable)
    seen: set[int] = set()
    out: dict[str, list[int]] = {}
    for mid in eligible:
        mine = [p for p in goal.get(mid, []) if p in ok and p not in seen]
        seen.update(mine)
        out[mid] = mine
    return out


def _sticky_target(
    members: Mapping[str, MemberMetadata],
    eligible: list[str],
    claimants: Mapping[int, list[str]],
    assignable: list[int],
    previous: Mapping[str, Sequence[int]],
) -> dict[str, list[int]]:
    """Balanced within one, keeping as much of what members own as that allows."""
    if not eligible:
        return {}
    rank = {mid: i for i, mid in enumerate(eligible)}
    kept: dict[str, list[int]] = {mid: [] for mid in eligible}
    for p in assignable:
        who = claimants.get(p, [])
        if len(who) == 1 and who[0] in kept:
            kept[who[0]].append(p)
    base, extra = divmod(len(assignable), len(eligible))
    by_kept = sorted(eligible, key=lambda mid: (-len(kept[mid]), rank[mid]))
    quota = {mid: base + (1 if i < extra else 0) for i, mid in enumerate(by_kept)}
    goal: dict[str, list[int]] = {}
    for mid in eligible:
        meta = members[mid]
        # Over quota: keep the busiest partitions (longest-running task first), give up idle ones.
        keep = sorted(kept[mid], key=lambda p: (-meta.busy_age(p), p))[: quota[mid]]
        goal[mid] = keep
    placed = {p for ps in goal.values() for p in ps}
    pool = [p for p in assignable if p not in placed]
    by_worker = {members[mid].worker_id: mid for mid in eligible}
    was = {p: w for w, ps in sorted(previous.items()) for p in ps}
    rest: list[int] = []
    for p in pool:  # back to the worker that had it, if it has room (a restarted member)
        back = by_worker.get(was.get(p, ""))
        if back is not None and len(goal[back]) < quota[back]:
            goal[back].append(p)
        else:
            rest.append(p)
    ring = CircularIterator(eligible)
    for p in rest:
        mid = ring.next()
        while len(goal[mid]) >= quota[mid]:
            mid = ring.next()
        goal[mid].append(p)
    return {mid: sorted(ps) for mid, ps in goal.items()}
