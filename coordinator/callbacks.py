"""The worker's callbacks a `Member` calls, and their contract.

* ``on_assigned(generation, partitions)`` runs on the member thread once the generation's
  assignment is committed and consistent; it should return quickly (heartbeats wait for it).
* ``on_revoked(partitions)`` runs, and returns, before any other member can be given those
  partitions. Eager (and on leave, fence, pause): on the member thread, before the member
  rejoins, leaves or fences itself; it must return well within the rebalance timeout (and
  within ``fence_margin_ms`` when fencing). Cooperative moves (and a graceful close): on a
  release thread of its own while the member keeps heartbeating, and the member reports the
  partitions as still owned until it returns; then the member rejoins so the leader can hand
  them on. It may block to finish or abandon in-flight work.
* ``on_lost(partitions)`` (default: ``on_revoked``) instead, when the membership is gone or
  going (fenced on its own clock, unknown member, illegal generation): others may be given the
  partitions within ``fence_margin_ms``, so it must let go fast rather than drain.
* ``on_fenced(reason, fatal)``: the member lost its membership; `fatal` means for good.

A callback that raises is logged: the member thread must go on heartbeating.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "AssignedCallback",
    "Callbacks",
    "FencedCallback",
    "LostCallback",
    "RevokedCallback",
]

log = logging.getLogger("ringleader.coordinator.member")

AssignedCallback = Callable[[int, list[int]], None]
RevokedCallback = Callable[[list[int]], None]
LostCallback = Callable[[list[int]], None]
FencedCallback = Callable[[str, bool], None]


@dataclass(frozen=True)
class Callbacks:
    on_assigned: AssignedCallback
    on_revoked: RevokedCallback
    on_lost: LostCallback
    on_fenced: FencedCallback | None = None

    def assigned(self, generation: int, partitions: list[int]) -> None:
        try:
            self.on_assigned(generation, partitions)
        except Exception:
            log.exception("on_assigned raised")

    def revoked(self, partitions: list[int]) -> None:
        try:
            self.on_revoked(partitions)
        except Exception:
            log.exception("on_revoked raised")

    def lost(self, partitions: list[int]) -> None:
        try:
            self.on_lost(partitions)
        except Exception:
            log.exception("on_lost raised")

    def fenced(self, reason: str, fatal: bool) -> None:
        if self.on_fenced is None:
            return
        try:
            self.on_fenced(reason, fatal)
        except Exception:
            log.exception("on_fenced raised")
