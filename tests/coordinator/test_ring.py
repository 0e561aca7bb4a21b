"""RingBuffer / CircularIterator: the round-robin cursor of the default assignor."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringleader.coordinator.ring import CircularIterator, RingBuffer


def test_next_walks_around_forever() -> None:
    ring = RingBuffer(["a", "b", "c"])
    assert [ring.next() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    assert ring.position == 1
    assert ring.peek() == "b"


def test_single_item_repeats() -> None:
    ring = RingBuffer([42])
    assert [ring.next() for _ in range(3)] == [42, 42, 42]


def test_empty_ring_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        RingBuffer([])
    with pytest.raises(ValueError, match="at least one item"):
        CircularIterator([])


def test_items_are_copied_and_fixed() -> None:
    src = ["a", "b"]
    ring = RingBuffer(src)
    src.append("c")
    assert len(ring) == 2
    assert ring.items == ("a", "b")
    assert ring[1] == "b"


def test_reset_goes_back_to_first() -> None:
    ring = RingBuffer("xyz")
    ring.next()
    ring.next()
    ring.reset()
    assert ring.next() == "x"


def test_iter_is_endless_and_starts_at_cursor() -> None:
    ring = RingBuffer([1, 2, 3])
    ring.next()
    it = iter(ring)
    assert list(itertools.islice(it, 5)) == [2, 3, 1, 2, 3]
    # the ring's own cursor is not moved by an iterator over it
    assert ring.peek() == 2
    assert next(it) == 1
    assert it.next() == 2
    assert iter(it) is it


@given(st.lists(st.integers(), min_size=1, max_size=20), st.integers(0, 200))
def test_next_equals_modulo_indexing(items: list[int], n: int) -> None:
    ring = RingBuffer(items)
    got = [ring.next() for _ in range(n)]
    assert got == [items[i % len(items)] for i in range(n)]
