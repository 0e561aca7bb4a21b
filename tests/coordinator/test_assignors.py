"""Assignors and member metadata: pure, no broker (like kafka-python's roundrobin tests)."""

from __future__ import annotations

import random
from collections import Counter

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringleader.coordinator.assignors import (
    KNOWN_ASSIGNORS,
    Assignor,
    CapacityAssignor,
    RoundRobinAssignor,
    StickyAssignor,
    get_assignor,
)
from ringleader.coordinator.errors import ConfigError
from ringleader.coordinator.metadata import Labels, MemberMetadata, MetadataDecodeError


def group(n: int) -> dict[str, MemberMetadata]:
    return {f"m-{i:03d}": MemberMetadata(worker_id=f"w{i:03d}") for i in range(n)}


def owners_of(result: dict[str, list[int]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for mid, ps in result.items():
        for p in ps:
            assert p not in out, f"partition {p} has two owners"
            out[p] = mid
    return out


def shuffled(d: dict[str, MemberMetadata], seed: int) -> dict[str, MemberMetadata]:
    items = list(d.items())
    random.Random(seed).shuffle(items)
    return dict(items)


member_counts = st.integers(min_value=1, max_value=25)
partition_lists = st.lists(st.integers(0, 500), max_size=200, unique=True)


# ---------------------------------------------------------------- metadata


def test_metadata_roundtrip_and_hashable() -> None:
    m = MemberMetadata(
        worker_id="w1",
        capacity=3,
        labels={"gpu": "yes", "arch": "arm"},
        zone="eu-1a",
        version="0.1.0",
        held_generation=7,
        held=(1, 4),
        log_offset=42,
    )
    blob = m.encode()
    assert blob
    assert MemberMetadata.decode(blob) == m
    assert hash(MemberMetadata.decode(blob)) == hash(m)
    assert isinstance(m.labels, Labels)
    assert m.labels == {"arch": "arm", "gpu": "yes"}
    assert MemberMetadata(worker_id="x").encode()  # defaults still encode non-empty


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",
        b"not msgpack at all",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": 1}),
        msgpack.packb({"id": "w"}),
        msgpack.packb(
            {"v": 1, "id": "w", "cap": "3", "lab": {}, "ver": "", "hg": -1, "held": [], "lo": -1}
        ),
        msgpack.packb(
            {"v": 1, "id": "w", "cap": 1, "lab": {}, "ver": "", "hg": -1, "held": [-1], "lo": -1}
        ),
        msgpack.packb(
            {"v": 1, "id": "", "cap": 1, "lab": {}, "ver": "", "hg": -1, "held": [], "lo": -1}
        ),
        msgpack.packb(
            {"v": 1, "id": "w", "cap": 1, "lab": {"a": 1}, "ver": "", "hg": -1, "held": []}
            | {"lo": -1}
        ),
        MemberMetadata(worker_id="w").encode() + b"\x00",
    ],
)
def test_metadata_decode_rejects_garbage(blob: bytes) -> None:
    with pytest.raises(MetadataDecodeError) as ei:
        MemberMetadata.decode(blob)
    assert isinstance(ei.value, ValueError)
    assert "member metadata" in str(ei.value)


def test_metadata_decode_ignores_unknown_keys_of_newer_schema() -> None:
    body = msgpack.unpackb(MemberMetadata(worker_id="w", capacity=2).encode())
    body["v"] = 2
    body["future"] = "x"
    assert MemberMetadata.decode(msgpack.packb(body)).capacity == 2


def test_metadata_validation() -> None:
    with pytest.raises(ValueError, match="worker_id"):
        MemberMetadata(worker_id="")
    with pytest.raises(ValueError, match="capacity"):
        MemberMetadata(worker_id="w", capacity=-1)


# ---------------------------------------------------------------- registry


def test_get_assignor_known_and_unknown() -> None:
    for name in KNOWN_ASSIGNORS:
        a = get_assignor(name)
        assert a.name == name
        assert isinstance(a, Assignor)
    assert get_assignor().name == "roundrobin"
    with pytest.raises(ConfigError, match="roundrobin, sticky, capacity"):
        get_assignor("range")
    with pytest.raises(ConfigError, match="only 'capacity'"):
        get_assignor("roundrobin", requirements={0: {"gpu": "yes"}})
    with pytest.raises(ConfigError, match="bad requirements"):
        get_assignor("capacity", requirements={-1: {"gpu": "yes"}})


# ---------------------------------------------------------------- roundrobin


def test_roundrobin_walks_the_ring_like_connect() -> None:
    members = {"b": MemberMetadata("w-b"), "a": MemberMetadata("w-a"), "c": MemberMetadata("w-c")}
    got = RoundRobinAssignor().assign(members, [4, 3, 2, 1, 0, 5, 6])
    assert got == {"a": [0, 3, 6], "b": [1, 4], "c": [2, 5]}


def test_roundrobin_more_members_than_partitions_and_empty() -> None:
    got = RoundRobinAssignor().assign(group(4), [9])
    assert got == {"m-000": [9], "m-001": [], "m-002": [], "m-003": []}
    assert RoundRobinAssignor().assign({}, [1, 2]) == {}
    assert RoundRobinAssignor().assign(group(2), []) == {"m-000": [], "m-001": []}


def test_assignors_refuse_bad_partitions() -> None:
    for a in (RoundRobinAssignor(), StickyAssignor(), CapacityAssignor()):
        with pytest.raises(ValueError, match="non-negative"):
            a.assign(group(2), [1, -2])


@pytest.mark.parametrize("assignor_name", ["roundrobin", "sticky"])
@given(n=member_counts, parts=partition_lists, seed=st.integers(0, 2**16))
@settings(max_examples=150, deadline=None)
def test_balanced_exactly_one_owner_deterministic(
    assignor_name: str, n: int, parts: list[int], seed: int
) -> None:
    members = group(n)
    a = get_assignor(assignor_name)
    got = a.assign(members, parts)
    assert set(got) == set(members)
    assert set(owners_of(got)) == set(parts)
    counts = [len(v) for v in got.values()]
    assert max(counts) - min(counts) <= 1
    assert all(v == sorted(v) for v in got.values())
    # same input in another dict/list order gives the same answer
    assert get_assignor(assignor_name).assign(shuffled(members, seed), parts[::-1]) == got


# ---------------------------------------------------------------- sticky


def with_held(
    members: dict[str, MemberMetadata], result: dict[str, list[int]], gen: int
) -> dict[str, MemberMetadata]:
    return {
        mid: MemberMetadata(worker_id=m.worker_id, held_generation=gen, held=tuple(result[mid]))
        for mid, m in members.items()
    }


def moved(before: dict[str, list[int]], after: dict[str, list[int]]) -> int:
    b, a = owners_of(before), owners_of(after)
    return sum(1 for p, owner in a.items() if b.get(p) != owner)


@given(n=st.integers(2, 20), parts=partition_lists, leaver=st.integers(0, 19))
@settings(max_examples=150, deadline=None)
def test_sticky_member_leaving_moves_only_its_partitions(
    n: int, parts: list[int], leaver: int
) -> None:
    leaver %= n
    members = group(n)
    gen1 = RoundRobinAssignor().assign(members, parts)
    held = with_held(members, gen1, 1)
    gone = f"m-{leaver:03d}"
    del held[gone]
    gen2 = StickyAssignor().assign(held, parts)
    assert set(owners_of(gen2)) == set(parts)
    counts = [len(v) for v in gen2.values()]
    assert max(counts) - min(counts) <= 1
    # only the leaver's partitions move (the minimum possible)
    assert moved({k: v for k, v in gen1.items() if k != gone}, gen2) == len(gen1[gone])
    for mid in gen2:
        assert set(gen1[mid]) <= set(gen2[mid])


@given(n=st.integers(1, 20), parts=partition_lists)
@settings(max_examples=150, deadline=None)
def test_sticky_member_joining_moves_the_minimum(n: int, parts: list[int]) -> None:
    members = group(n)
    gen1 = RoundRobinAssignor().assign(members, parts)
    held = with_held(members, gen1, 1)
    held["m-new"] = MemberMetadata(worker_id="w-new")
    gen2 = StickyAssignor().assign(held, parts)
    counts = [len(v) for v in gen2.values()]
    assert max(counts) - min(counts) <= 1
    # the newcomer takes the least it may (floor of the fair share), and nothing else moves
    assert len(gen2["m-new"]) == len(parts) // (n + 1)
    assert moved(gen1, gen2) == len(gen2["m-new"])


def test_sticky_newer_generation_claim_wins() -> None:
    members = {
        "a": MemberMetadata("wa", held_generation=3, held=(0, 1)),
        "b": MemberMetadata("wb", held_generation=4, held=(1, 2)),
    }
    got = StickyAssignor().assign(members, [0, 1, 2, 3])
    assert 1 in got["b"] and 2 in got["b"]
    assert got["a"] == [0, 3]


def test_sticky_ignores_held_partitions_that_no_longer_exist() -> None:
    members = {"a": MemberMetadata("wa", held_generation=1, held=(0, 1, 99))}
    assert StickyAssignor().assign(members, [0, 1, 2]) == {"a": [0, 1, 2]}


def test_sticky_reserved_partitions_wait_for_departed_worker() -> None:
    members = group(3)
    gen1 = RoundRobinAssignor().assign(members, range(9))
    held = with_held(members, gen1, 1)
    lost = gen1["m-002"]
    del held["m-002"]
    a = StickyAssignor()
    got = a.assign(held, list(range(9)), reserved={"w002": lost})
    assert got == {"m-000": gen1["m-000"], "m-001": gen1["m-001"]}
    assert sorted(a.unassigned) == lost
    assert "w002" in a.unassigned[lost[0]]
    # the worker came back (new member id, same worker id): reservation ignored, it gets them
    held["m-back"] = MemberMetadata("w002", held_generation=1, held=tuple(lost))
    got = a.assign(held, list(range(9)), reserved={"w002": lost})
    assert got["m-back"] == lost
    assert a.unassigned == {}


def test_sticky_no_members_reports_unassigned() -> None:
    plan = StickyAssignor().plan({}, [1, 2])
    assert plan.owners == {}
    assert plan.unassigned == {1: "no members", 2: "no members"}


# ---------------------------------------------------------------- capacity


def test_capacity_filters_by_labels_and_reports_unplaceable() -> None:
    members = {
        "a": MemberMetadata("wa", labels={"gpu": "yes"}),
        "b": MemberMetadata("wb"),
        "c": MemberMetadata("wc", zone="eu-1"),
    }
    reqs = {0: {"gpu": "yes"}, 1: {"gpu": "yes"}, 2: {"zone": "eu-1"}, 3: {"tpu": "yes"}}
    a = get_assignor("capacity", requirements=reqs)
    got = a.assign(members, [0, 1, 2, 3, 4, 5])
    assert got["a"][:2] == [0, 1]
    assert 2 in got["c"]
    assert 3 not in owners_of(got)
    assert isinstance(a, CapacityAssignor)
    assert set(a.unassigned) == {3}
    assert "no member" in a.unassigned[3]
    assert set(owners_of(got)) == {0, 1, 2, 4, 5}


def test_capacity_is_a_weight_by_default() -> None:
    members = {"big": MemberMetadata("wbig", capacity=3), "small": MemberMetadata("ws")}
    got = CapacityAssignor().assign(members, range(8))
    assert (len(got["big"]), len(got["small"])) == (6, 2)


def test_capacity_zero_member_gets_nothing() -> None:
    members = {"a": MemberMetadata("wa", capacity=0), "b": MemberMetadata("wb")}
    assert CapacityAssignor().assign(members, [0, 1]) == {"a": [], "b": [0, 1]}


def test_capacity_as_hard_limit() -> None:
    members = {"a": MemberMetadata("wa", capacity=2), "b": MemberMetadata("wb", capacity=1)}
    a = CapacityAssignor(capacity_is_limit=True)
    got = a.assign(members, range(5))
    assert sum(len(v) for v in got.values()) == 3
    assert len(got["a"]) == 2 and len(got["b"]) == 1
    assert len(a.unassigned) == 2
    assert all("at capacity" in r for r in a.unassigned.values())


def test_capacity_places_most_constrained_first() -> None:
    # the only gpu member must not be filled with unconstrained work before the gpu partition
    members = {"g": MemberMetadata("wg", capacity=1, labels={"gpu": "yes"})}
    members["n"] = MemberMetadata("wn", capacity=1)
    a = CapacityAssignor({5: {"gpu": "yes"}}, capacity_is_limit=True)
    got = a.assign(members, [0, 5])
    assert got == {"g": [5], "n": [0]}


@given(
    caps=st.lists(st.integers(0, 5), min_size=1, max_size=15),
    parts=partition_lists,
    seed=st.integers(0, 2**16),
)
@settings(max_examples=150, deadline=None)
def test_capacity_properties(caps: list[int], parts: list[int], seed: int) -> None:
    members = {
        f"m{i}": MemberMetadata(f"w{i}", capacity=c, labels={"even": str(i % 2 == 0)})
        for i, c in enumerate(caps)
    }
    reqs = {p: {"even": "True"} for p in parts if p % 3 == 0}
    a = CapacityAssignor(reqs)
    got = a.assign(members, parts)
    placed = owners_of(got)
    assert set(placed) | set(a.unassigned) == set(parts)
    assert not set(placed) & set(a.unassigned)
    for p, mid in placed.items():
        assert members[mid].capacity > 0
        if p in reqs:
            assert members[mid].labels["even"] == "True"
    b = CapacityAssignor(reqs)
    assert b.assign(shuffled(members, seed), parts[::-1]) == got
    assert b.unassigned == a.unassigned
    # weighted balance among unconstrained placement: no member exceeds its share by > 1
    if not reqs and any(caps):
        total = sum(caps)
        for mid, ps in got.items():
            share = len(parts) * members[mid].capacity / total
            assert len(ps) <= share + 1


def test_counter_helper_sanity() -> None:
    got = RoundRobinAssignor().assign(group(3), list(range(10)))
    assert Counter(len(v) for v in got.values()) == Counter({4: 1, 3: 2})
