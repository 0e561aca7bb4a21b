"""Assignors selectable by name: "roundrobin" (default), "sticky", "capacity"."""

from __future__ import annotations

from collections.abc import Mapping

from ringleader.coordinator.assignors.base import AssignmentPlan, Assignor
from ringleader.coordinator.assignors.capacity import CapacityAssignor
from ringleader.coordinator.assignors.roundrobin import RoundRobinAssignor
from ringleader.coordinator.assignors.sticky import StickyAssignor
from ringleader.coordinator.errors import ConfigError

DEFAULT_ASSIGNOR = "roundrobin"
KNOWN_ASSIGNORS = ("roundrobin", "sticky", "capacity")

__all__ = [
    "DEFAULT_ASSIGNOR",
    "KNOWN_ASSIGNORS",
    "AssignmentPlan",
    "Assignor",
    "CapacityAssignor",
    "RoundRobinAssignor",
    "StickyAssignor",
    "get_assignor",
]


def get_assignor(
    name: str = DEFAULT_ASSIGNOR,
    *,
    requirements: Mapping[int, Mapping[str, str]] | None = None,
    capacity_is_limit: bool = False,
) -> Assignor:
    """Build the assignor called `name`; options only apply to "capacity".

    Raises ConfigError for an unknown name (listing the known ones) or an option the
    named assignor does not take.
    """
    if name == "capacity":
        try:
            return CapacityAssignor(requirements, capacity_is_limit=capacity_is_limit)
        except (TypeError, ValueError, AttributeError) as e:
            raise ConfigError(f"assignor 'capacity': bad requirements: {e}") from e
    if name not in KNOWN_ASSIGNORS:
        raise ConfigError(
            f"unknown assignor {name!r}; known assignors: {', '.join(KNOWN_ASSIGNORS)}"
        )
    if requirements is not None or capacity_is_limit:
        raise ConfigError(
            f"assignor {name!r} takes no requirements/capacity_is_limit (only 'capacity' does)"
        )
    return RoundRobinAssignor() if name == "roundrobin" else StickyAssignor()
