"""Typed settings of the registry (arq style: a dataclass with `from_env`).

The environment is read by `ringleader.env`, the parser every settings class uses; the
variable names are kept in each field's metadata because the registry's do not all follow
`RINGLEADER_<FIELD>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ringleader import env as envmod
from ringleader.errors import ConfigError
from ringleader.redisurl import check_redis_url, redacted_repr


@dataclass(frozen=True)
class RegistrySettings:
    def __repr__(self) -> str:
        return redacted_repr(self)

    #: RINGLEADER_REDIS as App and Client read it; RINGLEADER_REDIS_URL, its older name,
    #: still works.
    redis_url: str = field(
        default="redis://127.0.0.1:6379/0",
        metadata=envmod.env_names("RINGLEADER_REDIS", "RINGLEADER_REDIS_URL"),
    )
    #: Namespace of every key; wrap it in braces (`{rl}`) to keep all keys in one
    #: Redis Cluster slot, which multi-key scripts need.
    prefix: str = field(
        default="ringleader:registry", metadata=envmod.env_names("RINGLEADER_REGISTRY_PREFIX")
    )
    #: Entries kept in the recent-changes log; a client further behind does a full fetch.
    log_size: int = field(default=1000, metadata=envmod.env_names("RINGLEADER_REGISTRY_LOG_SIZE"))
    #: Eviction pauses when more than this share of leases has lapsed at once
    #: (RINGLEADER_SELF_PRESERVATION_SHARE).
    self_preservation_share: float = 0.15
    #: ...but only with at least this many leases (with 2 instances one death is 50%)
    #: (RINGLEADER_SELF_PRESERVATION_MIN_LEASES).
    self_preservation_min_leases: int = 10
    #: Not read from the environment.
    socket_timeout: float = field(default=2.0, metadata=envmod.env_names())

    def __post_init__(self) -> None:
        check_redis_url(self.redis_url, setting="redis_url")
        if not self.prefix:
            raise ConfigError("registry prefix must not be empty", setting="prefix")
        if (
            isinstance(self.log_size, bool)
            or not isinstance(self.log_size, int)
            or (self.log_size < 1)
        ):
            raise ConfigError(f"log_size must be >= 1, got {self.log_size!r}", setting="log_size")
        if not 0.0 <= self.self_preservation_share <= 1.0:
            raise ConfigError(
                "self_preservation_share must be within [0, 1], "
                f"got {self.self_preservation_share!r}",
                setting="self_preservation_share",
            )
        if self.self_preservation_min_leases < 0:
            raise ConfigError(
                "self_preservation_min_leases must be >= 0, "
                f"got {self.self_preservation_min_leases!r}",
                setting="self_preservation_min_leases",
            )
        if not self.socket_timeout > 0:
            raise ConfigError(
                f"socket_timeout must be > 0, got {self.socket_timeout!r}", setting="socket_timeout"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RegistrySettings:
        """Read RINGLEADER_REDIS (or RINGLEADER_REDIS_URL), RINGLEADER_REGISTRY_PREFIX,
        RINGLEADER_REGISTRY_LOG_SIZE, RINGLEADER_SELF_PRESERVATION_SHARE,
        RINGLEADER_SELF_PRESERVATION_MIN_LEASES."""
        return envmod.from_env(cls, env)
