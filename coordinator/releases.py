"""Cooperative moves in progress: each drains its partitions on a thread of its own.

The member thread starts a release when the machine says `Revoke(wait=False)` and goes on
heartbeating; the release thread drains (the member's `on_revoked`) and then reports back
through `done`, which the member turns into a `Released` event. Only the member thread calls
these methods.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Releases"]


class Releases:
    def __init__(
        self,
        drain: Callable[[list[int]], None],
        done: Callable[[tuple[int, ...]], None],
    ) -> None:
        self._drain = drain
        self._done = done
        self._running: list[tuple[threading.Thread, tuple[int, ...]]] = []

    def start(self, partitions: tuple[int, ...]) -> None:
        def run() -> None:
            self._drain(list(partitions))
            self._done(partitions)

        t = threading.Thread(target=run, name="ringleader-release", daemon=True)
        self._running.append((t, partitions))
        t.start()

    def finished(self, partitions: tuple[int, ...]) -> None:
        """Forget the finished release of `partitions` (its Released was fed)."""
        self._running = [(t, ps) for t, ps in self._running if t.is_alive() or ps != partitions]

    def join_all(self) -> set[int]:
        """Wait for every release in progress; the partitions they let go."""
        done: set[int] = set()
        for t, parts in self._running:
            t.join()
            done.update(parts)
        self._running.clear()
        return done
