"""Typed settings of the registry (arq style: a dataclass with `from_env`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from ringleader.registry.errors import InvalidSetting

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class RegistrySettings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Namespace of every key; wrap it in braces (`{rl}`) to keep all keys in one
    #: Redis Cluster slot, which multi-key scripts need.
    prefix: str = "ringleader:registry"
    #: Entries kept in the recent-changes log; a client further behind does a full fetch.
    log_size: int = 1000
    #: Eviction pauses when more than this share of leases has lapsed at once.
    self_preservation_share: float = 0.15
    #: ...but only with at least this many leases (with 2 instances one death is 50%).
    self_preservation_min_leases: int = 10
    socket_timeout: float = 2.0

    def __post_init__(self) -> None:
        if self.log_size < 1:
            raise InvalidSetting(f"log_size must be >= 1, got {self.log_size!r}")
        if not 0.0 <= self.self_preservation_share <= 1.0:
            raise InvalidSetting(
                "self_preservation_share must be within [0, 1], "
                f"got {self.self_preservation_share!r}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistrySettings:
        """Read RINGLEADER_REDIS (as App and Client do; RINGLEADER_REDIS_URL, its older name,
        still works), RINGLEADER_REGISTRY_PREFIX, RINGLEADER_REGISTRY_LOG_SIZE,
        RINGLEADER_SELF_PRESERVATION_SHARE, RINGLEADER_SELF_PRESERVATION_MIN_LEASES."""
        e = os.environ if env is None else env
        d = cls()
        return cls(
            redis_url=e.get("RINGLEADER_REDIS") or e.get("RINGLEADER_REDIS_URL") or d.redis_url,
            prefix=e.get("RINGLEADER_REGISTRY_PREFIX", d.prefix),
            log_size=_number(e, "RINGLEADER_REGISTRY_LOG_SIZE", int, d.log_size),
            self_preservation_share=_number(
                e, "RINGLEADER_SELF_PRESERVATION_SHARE", float, d.self_preservation_share
            ),
            self_preservation_min_leases=_number(
                e, "RINGLEADER_SELF_PRESERVATION_MIN_LEASES", int, d.self_preservation_min_leases
            ),
        )


def _number(env: Mapping[str, str], var: str, kind: type[N], default: N) -> N:
    raw = env.get(var)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InvalidSetting(f"{var} must be {kind.__name__}, got {raw!r}") from None
