"""Typed settings of a group member (arq style: a frozen dataclass with `from_env`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from ringleader.coordinator.errors import ConfigError

ENV_PREFIX = "RINGLEADER_"


@dataclass(frozen=True)
class MemberSettings:
    """How a member takes part in its group.

    `fence_margin_ms` is how long before the broker would expire the session the member
    revokes its own partitions when heartbeats have not succeeded: the time a worker has to
    stop its tasks before anyone else can be given them.
    """

    group_id: str
    session_timeout_ms: int = 10000
    rebalance_timeout_ms: int = 30000
    heartbeat_interval_ms: int = 1000
    group_instance_id: str | None = None
    assignor: str = "roundrobin"
    request_timeout_ms: int = 10000
    connect_timeout_ms: int = 5000
    retry_backoff_ms: int = 200
    fence_margin_ms: int = 2000
    client_id: str = "ringleader"

    def __post_init__(self) -> None:
        if not self.group_id or not self.group_id.strip():
            raise ConfigError("group_id must be a non-empty string")
        for name in (
            "session_timeout_ms",
            "rebalance_timeout_ms",
            "heartbeat_interval_ms",
            "request_timeout_ms",
            "connect_timeout_ms",
            "retry_backoff_ms",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(
                    f"{name} must be a positive integer of milliseconds, got {value!r}"
                )
        if not isinstance(self.fence_margin_ms, int) or self.fence_margin_ms < 0:
            raise ConfigError(f"fence_margin_ms must be >= 0, got {self.fence_margin_ms!r}")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ConfigError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )
        if self.fence_margin_ms + self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ConfigError(
                f"fence_margin_ms ({self.fence_margin_ms}) + heartbeat_interval_ms "
                f"({self.heartbeat_interval_ms}) must be below session_timeout_ms "
                f"({self.session_timeout_ms}), or the member fences itself between two heartbeats"
            )
        if self.rebalance_timeout_ms < self.session_timeout_ms:
            raise ConfigError(
                f"rebalance_timeout_ms ({self.rebalance_timeout_ms}) must be at least "
                f"session_timeout_ms ({self.session_timeout_ms})"
            )
        if self.group_instance_id is not None and not self.group_instance_id.strip():
            raise ConfigError("group_instance_id must be None or a non-empty string")
        if not self.assignor:
            raise ConfigError("assignor must name an assignor")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = ENV_PREFIX
    ) -> MemberSettings:
        """Read `<prefix><FIELD>` variables, e.g. RINGLEADER_SESSION_TIMEOUT_MS."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            key = prefix + f.name.upper()
            if key not in env:
                continue
            raw = env[key]
            if f.name.endswith("_ms"):
                try:
                    kwargs[f.name] = int(raw)
                except ValueError:
                    raise ConfigError(f"{key} must be an integer, got {raw!r}") from None
            elif f.name == "group_instance_id":
                kwargs[f.name] = raw or None
            else:
                kwargs[f.name] = raw
        if "group_id" not in kwargs:
            raise ConfigError(f"{prefix}GROUP_ID is not set")
        return cls(**kwargs)  # type: ignore[arg-type]

    @property
    def session_timeout(self) -> float:
        return self.session_timeout_ms / 1000.0

    @property
    def rebalance_timeout(self) -> float:
        return self.rebalance_timeout_ms / 1000.0

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_interval_ms / 1000.0

    @property
    def request_timeout(self) -> float:
        return self.request_timeout_ms / 1000.0

    @property
    def connect_timeout(self) -> float:
        return self.connect_timeout_ms / 1000.0

    @property
    def retry_backoff(self) -> float:
        return self.retry_backoff_ms / 1000.0

    @property
    def fence_margin(self) -> float:
        return self.fence_margin_ms / 1000.0
