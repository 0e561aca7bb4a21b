"""Kafka Connect's ``CircularIterator``: an endless walk around a fixed ring of items.

The round-robin assignor hands each partition to ``ring.next()``, so consecutive partitions go
to consecutive members and wrap around.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class CircularIterator(Iterator[T]):
    """An endless iterator over a fixed, non-empty sequence (``__next__`` never stops).

    The items are copied at construction, so the ring never grows or shrinks under it.
    """

    __slots__ = ("_items", "_pos")

    def __init__(self, items: Iterable[T]) -> None:
        self._items: tuple[T, ...] = tuple(items)
        if not self._items:
            raise ValueError("CircularIterator needs at least one item")
        self._pos = 0

    def __iter__(self) -> CircularIterator[T]:
        return self

    def __next__(self) -> T:
        item = self._items[self._pos]
        self._pos = (self._pos + 1) % len(self._items)
        return item

    def next(self) -> T:
        """Connect's spelling of ``next(ring)``: the item at the cursor, then advance."""
        return self.__next__()

    def __repr__(self) -> str:
        return f"CircularIterator({list(self._items)!r}, position={self._pos})"
