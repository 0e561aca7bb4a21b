"""A fixed ring of items and an iterator that walks it forever.

This is Kafka Connect's ``CircularIterator``: the round-robin assignor hands each partition
to ``ring.next()``, so consecutive partitions go to consecutive members and wrap around.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar, overload

T = TypeVar("T")


class RingBuffer(Generic[T]):
    """A fixed, non-empty sequence of items read in a circle.

    The items are copied at construction; the ring never grows or shrinks. ``next()`` returns
    the item at the cursor and advances it, wrapping to the first item after the last.
    """

    __slots__ = ("_items", "_pos")

    def __init__(self, items: Iterable[T]) -> None:
        self._items: tuple[T, ...] = tuple(items)
        if not self._items:
            raise ValueError("RingBuffer needs at least one item")
        self._pos = 0

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...
    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        return self._items[index]

    @property
    def items(self) -> tuple[T, ...]:
        return self._items

    @property
    def position(self) -> int:
        """Index of the item the next call to ``next()`` returns."""
        return self._pos

    def peek(self) -> T:
        """The item ``next()`` would return, without advancing."""
        return self._items[self._pos]

    def next(self) -> T:
        """Return the item at the cursor and advance, wrapping around."""
        item = self._items[self._pos]
        self._pos = (self._pos + 1) % len(self._items)
        return item

    def reset(self) -> None:
        self._pos = 0

    def __iter__(self) -> CircularIterator[T]:
        """An independent iterator that starts at this ring's cursor and never ends."""
        return CircularIterator(self._items, self._pos)

    def __repr__(self) -> str:
        return f"RingBuffer({list(self._items)!r}, position={self._pos})"


class CircularIterator(Iterator[T]):
    """An endless iterator over a fixed, non-empty sequence (``__next__`` never stops)."""

    __slots__ = ("_items", "_pos")

    def __init__(self, items: Sequence[T], start: int = 0) -> None:
        if not items:
            raise ValueError("CircularIterator needs at least one item")
        self._items = tuple(items)
        self._pos = start % len(self._items)

    def __iter__(self) -> CircularIterator[T]:
        return self

    def __next__(self) -> T:
        item = self._items[self._pos]
        self._pos = (self._pos + 1) % len(self._items)
        return item

    def next(self) -> T:
        return self.__next__()
