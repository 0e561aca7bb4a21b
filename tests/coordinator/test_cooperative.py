"""The leader's cooperative plan (coordinator.cooperative): pure, no broker; its docstring is the
spec. Every plan below goes through `check`, which recomputes the expected bounds on its own."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ringleader.coordinator.assignors import RoundRobinAssignor
from ringleader.coordinator.cooperative import COOPERATIVE, EAGER, CooperativePlan, plan
from ringleader.coordinator.metadata import PROTOCOLS, MemberMetadata

Group = dict[str, MemberMetadata]
Case = tuple[Group, list[int], dict[str, list[int]] | None, dict[str, list[int]] | None]


def claims(members: Group, parts: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for mid, m in members.items():
        for p in set(m.owned) & set(parts):
            out.setdefault(p, []).append(mid)
    return out


def held_of(got: CooperativePlan) -> set[int]:
    return {p for p, why in got.unassigned.items() if why.startswith("reserved for departed")}


def check(
    members: Group,
    parts: list[int],
    got: CooperativePlan,
    previous: Mapping[str, Sequence[int]] | None = None,
    reserved: Mapping[str, Sequence[int]] | None = None,
    *,
    sticky: bool = True,
) -> None:
    claimed = claims(members, parts)
    held = held_of(got)
    assignable = [p for p in parts if p not in held]
    live = [mid for mid, m in members.items() if not m.leaving]
    assert set(got.owners) == set(got.target) == set(members)
    owner: dict[int, str] = {}
    for mid, ps in got.owners.items():
        assert ps == sorted(ps) and set(ps) <= set(got.target[mid])
        for p in ps:
            assert p not in owner, f"partition {p} owned by {owner[p]} and {mid}"
            owner[p] = mid
            assert claimed.get(p, [mid]) == [mid], f"{mid} given {p}, claimed by {claimed[p]}"
    for mid, m in members.items():
        owned = set(m.owned) & set(parts)
        assert got.revoking.get(mid) != []  # only members with something to release are listed
        assert set(got.revoking.get(mid, [])) == owned - set(got.owners[mid])
        sole = {p for p in owned if claimed[p] == [mid]}
        assert sole & set(got.target[mid]) <= set(got.owners[mid])
        if m.leaving:
            assert got.target[mid] == []
    for p, who in claimed.items():
        if len(who) > 1:
            assert p not in owner and ("several" in got.unassigned[p] or p in held)
            assert all(p in got.revoking[mid] for mid in who)
    assert set(got.unassigned) == set(parts) - set(owner)
    # held back: what is reserved for an absent worker, unless its owner keeps it (then void)
    present = {m.worker_id for m in members.values()}
    wanted = {p for w, ps in (reserved or {}).items() if w not in present for p in ps}
    assert held == wanted & set(parts) - set(owner)
    assert all(not set(ps) & held for ps in got.target.values())
    everyone_coop = bool(members) and all(m.cooperative for m in members.values())
    assert got.protocol == (COOPERATIVE if everyone_coop else EAGER)
    if not sticky:
        return
    targeted = sorted(p for mid in live for p in got.target[mid])
    assert targeted == (assignable if live else [])
    sizes = {mid: len(got.target[mid]) for mid in live}
    assert not sizes or max(sizes.values()) - min(sizes.values()) <= 1
    # Fewest moves: the optimal quotas give the extra slots to the members keeping the most.
    kept = {mid: {p for p in members[mid].owned if claimed.get(p) == [mid]} for mid in live}
    base, extra = divmod(len(assignable), len(live)) if live else (0, 0)
    most = sorted(live, key=lambda mid: -len(kept[mid]))[:extra]
    bound = sum(max(0, len(kept[mid]) - base - (mid in most)) for mid in live)
    stay = {mid: kept[mid] & set(got.owners[mid]) for mid in live}
    assert sum(len(kept[mid] - stay[mid]) for mid in live) == bound
    was = {p: w for w, ps in (previous or {}).items() for p in ps}
    pool = set(assignable) - {p for ps in stay.values() for p in ps}
    for mid in live:
        meta = members[mid]
        assert len(stay[mid]) == min(len(kept[mid]), sizes[mid])  # keeps all its quota allows
        if len(kept[mid]) <= base:
            assert not kept[mid] & set(got.revoking.get(mid, []))
        gone = kept[mid] - stay[mid]
        if gone and stay[mid]:  # idle first: nothing given up is busier than what is kept
            assert max(map(meta.busy_age, gone)) <= min(map(meta.busy_age, stay[mid]))
        mine = {p for p in pool if was.get(p) == meta.worker_id}  # its own from last generation
        back = mine & set(got.target[mid])
        assert len(back) == min(len(mine), sizes[mid] - len(stay[mid]))


def apply(members: Group, got: CooperativePlan) -> Group:
    """Each member releases its `revoking` and takes its `owners`."""
    out: Group = {}
    for mid, m in members.items():
        own = got.owners[mid]
        out[mid] = replace(m, owned=tuple(own), busy=tuple(b for b in m.busy if b[0] in own))
    return out


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 8))
    workers = draw(st.permutations([f"w{i}" for i in range(8)]))[:n]
    parts = list(range(draw(st.integers(0, 25))))
    owned: list[list[int]] = [[] for _ in range(n)]
    busy: list[dict[int, int]] = [{} for _ in range(n)]
    for p in parts:
        k = draw(st.integers(0, 9))  # none, one, or (k == 9) two claimants
        if k >= 4:
            ids = st.lists(st.integers(0, n - 1), min_size=1, max_size=1 + (k == 9), unique=True)
            for i in draw(ids):
                owned[i].append(p)
                if (age := draw(st.integers(-1, 6))) >= 0:
                    busy[i][p] = age
    members = {
        f"m{i}": MemberMetadata(
            workers[i],
            protocol=draw(st.sampled_from(PROTOCOLS)),
            owned=tuple(owned[i]),
            busy=tuple(busy[i].items()),
            leaving=draw(st.integers(0, 4)) == 0,
        )
        for i in range(n)
    }
    who = st.sampled_from([*workers, "w-gone", "w-lost"])
    previous: dict[str, list[int]] | None = None
    if draw(st.booleans()):
        previous = {}
        for p in parts:
            if draw(st.booleans()):
                previous.setdefault(draw(who), []).append(p)
    reserved = draw(st.none() | st.dictionaries(who, st.lists(st.integers(0, 30), max_size=6)))
    return members, parts, previous, reserved


@given(cases(), st.randoms())
@settings(max_examples=400, deadline=None)
def test_plan_properties(case: Case, rnd: random.Random) -> None:
    members, parts, previous, reserved = case
    got = plan(members, parts, previous=previous, reserved=reserved)
    check(members, parts, got, previous, reserved)
    items = list(members.items())
    rnd.shuffle(items)  # same answer whatever the order of the input
    assert plan(dict(items), parts[::-1], previous=previous, reserved=reserved) == got


@given(cases())
@settings(max_examples=300, deadline=None)
def test_release_then_replan_settles(case: Case) -> None:
    members, parts, previous, reserved = case
    first = plan(members, parts, previous=previous, reserved=reserved)
    after = apply(members, first)
    second = plan(after, parts, previous=previous, reserved=reserved)
    check(after, parts, second, previous, reserved)
    assert second.revoking == {} and second.moves == 0
    assert second.settled and second.owners == second.target


def settle(
    members: Group, parts: list[int], previous: dict[str, list[int]]
) -> tuple[Group, dict[str, list[int]]]:
    """plan -> release -> plan until settled; returns the group after it (leavers gone)."""
    for step in itertools.count():
        got = plan(members, parts, previous=previous)
        check(members, parts, got, previous)
        members = apply(members, got)
        if got.settled:
            break
        assert step == 0, "the follow-up rebalance must settle"
    members = {mid: m for mid, m in members.items() if not m.leaving}
    return members, {m.worker_id: list(m.owned) for m in members.values()}


kinds = st.sampled_from(["join", "leave", "kill", "restart"])
events = st.lists(st.tuples(kinds, st.integers(0, 7), st.sampled_from(PROTOCOLS)), max_size=10)


@given(n=st.integers(0, 5), nparts=st.integers(0, 24), evs=events)
@settings(max_examples=200, deadline=None)
def test_membership_events(n: int, nparts: int, evs: list[tuple[str, int, str]]) -> None:
    parts = list(range(nparts))
    fresh = itertools.count(n)
    members = {f"m{i}": MemberMetadata(f"w{i}", protocol=COOPERATIVE) for i in range(n)}
    members, previous = settle(members, parts, {})
    for kind, i, proto in evs:
        ids = sorted(members)
        if kind == "join":
            k = next(fresh)
            members[f"m{k}"] = MemberMetadata(f"w{k}", protocol=proto)
        elif not ids:
            continue
        elif kind == "leave":
            members[ids[i % len(ids)]] = replace(members[ids[i % len(ids)]], leaving=True)
        elif kind == "kill":  # gone with its partitions, without a goodbye
            del members[ids[i % len(ids)]]
        else:  # a static member restarts: new member id, same worker id, owns nothing
            worker = members.pop(ids[i % len(ids)]).worker_id
            members[f"m{next(fresh)}"] = MemberMetadata(worker, protocol=proto)
        members, previous = settle(members, parts, previous)
        assert sorted(p for ps in previous.values() for p in ps) == (parts if members else [])


def test_over_quota_gives_up_idle_partitions_first() -> None:
    a = MemberMetadata("wa", protocol=COOPERATIVE, owned=tuple(range(6)), busy=((1, 0), (4, 9)))
    members = {"a": a, "b": MemberMetadata("wb", protocol=COOPERATIVE)}
    got = plan(members, range(6))
    check(members, list(range(6)), got)
    assert got.target == {"a": [0, 1, 4], "b": [2, 3, 5]}
    assert got.owners == {"a": [0, 1, 4], "b": []} and got.revoking == {"a": [2, 3, 5]}
    assert got.unassigned == {p: "being released by a" for p in (2, 3, 5)}
    again = plan(apply(members, got), range(6))
    assert again.settled and again.owners == {"a": [0, 1, 4], "b": [2, 3, 5]}


def test_restarted_static_member_gets_its_partitions_back() -> None:
    four = {f"m{i}": MemberMetadata(f"w{i}") for i in range(4)}
    gen = RoundRobinAssignor().assign(four, range(12))
    previous = {f"w{i}": gen[f"m{i}"] for i in range(4)}
    # w3 is lost for good and w2 restarts (new member id, nothing owned); w0, w1 keep theirs
    members = {f"m{i}": MemberMetadata(f"w{i}", owned=tuple(gen[f"m{i}"])) for i in range(2)}
    members["m2-again"] = MemberMetadata("w2")
    got = plan(members, range(12), previous=previous)
    check(members, list(range(12)), got, previous)
    assert set(gen["m2"]) < set(got.owners["m2-again"]) and len(got.owners["m2-again"]) == 4
    blind = plan(members, range(12))  # without `previous` the ring would hand them elsewhere
    assert not set(gen["m2"]) <= set(blind.owners["m2-again"])
    # no room for all of them: it gets back what its quota allows
    members["m4"], members["m5"] = MemberMetadata("w4"), MemberMetadata("w5")
    crowded = plan(members, range(12), previous=previous)
    assert set(crowded.owners["m2-again"]) < set(gen["m2"])
    assert len(crowded.owners["m2-again"]) == 2


def test_reservations_hold_back_only_for_absent_workers() -> None:
    members = {
        "a": MemberMetadata("wa", owned=(0, 1, 2)),
        "b": MemberMetadata("wb", owned=(3,)),
        "z": MemberMetadata("wz", owned=(7,), leaving=True),
    }
    # 3 is owned and kept (void), wa is present (void), 7 is released by its owner (held now)
    reserved = {"w-gone": [3, 4, 5, 7, 99], "wa": [0, 1, 6]}
    got = plan(members, range(8), reserved=reserved)
    check(members, list(range(8)), got, reserved=reserved)
    why = "reserved for departed worker 'w-gone'"
    assert got.unassigned == {4: why, 5: why, 7: why} and got.revoking == {"z": [7]}
    assert got.target == got.owners == {"a": [0, 1, 2], "b": [3, 6], "z": []}
    members = apply(members, got)
    assert plan(members, range(8), reserved=reserved).settled  # the follow-up moves nothing
    members["c"] = MemberMetadata("w-gone")  # it came back: the reservation is void
    back = plan(members, range(8), previous={"w-gone": [4, 5, 7]}, reserved=reserved)
    assert back.unassigned == {} and back.owners["c"] == [4, 5]


@given(n=st.integers(1, 12), parts=st.lists(st.integers(0, 500), max_size=60, unique=True))
@settings(max_examples=200, deadline=None)
def test_first_generation_is_the_ring_round_robin(n: int, parts: list[int]) -> None:
    members = {f"m-{i:02d}": MemberMetadata(f"w{(i * 7) % 12:02d}") for i in range(n)}
    got = plan(members, parts)
    check(members, sorted(parts), got)
    assert got.owners == got.target == RoundRobinAssignor().assign(members, parts)
    assert got.settled and got.unassigned == {} and got.protocol == EAGER


@given(cases(), st.integers(1, 5))
@settings(max_examples=300, deadline=None)
def test_target_hook_is_used_restricted_and_settles(case: Case, stride: int) -> None:
    members, parts, _, reserved = case
    everyone = [*sorted(members), "ghost"]
    asked: list[set[str]] = []

    def skewed(group: Mapping[str, MemberMetadata], ps: Sequence[int]) -> dict[str, list[int]]:
        asked.append(set(group))  # deliberately answers for members it was not given, too
        out: dict[str, list[int]] = {mid: [] for mid in everyone}
        for p in range(32):
            out[everyone[(p * stride) % len(everyone)]].append(p)
            if p % 4 == 0:  # a second claim: the first eligible member in member order wins
                out[everyone[(p * stride + 1) % len(everyone)]].append(p)
        return out

    got = plan(members, parts, reserved=reserved, target=skewed)
    check(members, parts, got, reserved=reserved, sticky=False)
    eligible = {mid for mid, m in members.items() if not m.leaving}
    assert asked and all(a == eligible for a in asked)
    ok = set(parts) - held_of(got)
    want, first = skewed(members, parts), dict[int, str]()
    for mid in sorted(eligible, key=lambda mid: (members[mid].worker_id, mid)):
        for p in set(want[mid]) & ok:
            first.setdefault(p, mid)
    assert got.target == {mid: sorted(p for p in first if first[p] == mid) for mid in members}
    after = apply(members, got)
    second = plan(after, parts, reserved=reserved, target=skewed)
    check(after, parts, second, reserved=reserved, sticky=False)
    assert second.settled and second.target == got.target
