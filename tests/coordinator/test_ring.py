"""CircularIterator: the round-robin cursor of the default assignor."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringleader.coordinator.ring import CircularIterator


def test_next_walks_around_forever() -> None:
    ring = CircularIterator(["a", "b", "c"])
    assert [ring.next() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    assert next(ring) == "b"  # the builtin and Connect's spelling share one cursor


def test_single_item_repeats() -> None:
    ring = CircularIterator([42])
    assert [ring.next() for _ in range(3)] == [42, 42, 42]


def test_empty_ring_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        CircularIterator([])


def test_items_are_copied_and_fixed() -> None:
    src = ["a", "b"]
    ring = CircularIterator(src)
    src.append("c")
    assert [ring.next() for _ in range(4)] == ["a", "b", "a", "b"]


def test_iterating_is_endless_and_continues_from_the_cursor() -> None:
    ring = CircularIterator("xyz")
    ring.next()
    assert iter(ring) is ring
    assert list(itertools.islice(ring, 5)) == ["y", "z", "x", "y", "z"]
    assert ring.next() == "x"


@given(st.lists(st.integers(), min_size=1, max_size=20), st.integers(0, 200))
def test_next_equals_modulo_indexing(items: list[int], n: int) -> None:
    ring = CircularIterator(items)
    got = [ring.next() for _ in range(n)]
    assert got == [items[i % len(items)] for i in range(n)]
