"""Typed settings of a group member (arq style: a frozen dataclass with `from_env`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ringleader import env as envmod
from ringleader.errors import ConfigError

ENV_PREFIX = envmod.ENV_PREFIX


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
    heartbeat_interval_ms: int = 250  # a new member joins after the others' next heartbeat
    group_instance_id: str | None = None
    assignor: str = "roundrobin"
    request_timeout_ms: int = 10000
    connect_timeout_ms: int = 5000
    retry_backoff_ms: int = 200
    fence_margin_ms: int = 2000
    client_id: str = "ringleader"
    # "cooperative": keep what stays across rebalances, move partitions in two steps;
    # "eager": revoke everything on every rebalance.
    rebalance_protocol: str = "cooperative"
    # How long a departed static member's partitions wait for it (None: the session timeout).
    scheduled_rebalance_delay_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.group_id or not self.group_id.strip():
            raise ConfigError("group_id must be a non-empty string", setting="group_id")
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
                    f"{name} must be a positive integer of milliseconds, got {value!r}",
                    setting=name,
                )
        if not isinstance(self.fence_margin_ms, int) or self.fence_margin_ms < 0:
            raise ConfigError(
                f"fence_margin_ms must be >= 0, got {self.fence_margin_ms!r}",
                setting="fence_margin_ms",
            )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ConfigError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms})",
                setting="heartbeat_interval_ms",
            )
        if self.fence_margin_ms + self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ConfigError(
                f"fence_margin_ms ({self.fence_margin_ms}) + heartbeat_interval_ms "
                f"({self.heartbeat_interval_ms}) must be below session_timeout_ms "
                f"({self.session_timeout_ms}), or the member fences itself between two heartbeats",
                setting="fence_margin_ms",
            )
        if self.rebalance_timeout_ms < self.session_timeout_ms:
            raise ConfigError(
                f"rebalance_timeout_ms ({self.rebalance_timeout_ms}) must be at least "
                f"session_timeout_ms ({self.session_timeout_ms})",
                setting="rebalance_timeout_ms",
            )
        if self.group_instance_id is not None and not self.group_instance_id.strip():
            raise ConfigError(
                "group_instance_id must be None or a non-empty string", setting="group_instance_id"
            )
        if not self.assignor:
            raise ConfigError("assignor must name an assignor", setting="assignor")
        if self.rebalance_protocol not in ("cooperative", "eager"):
            raise ConfigError(
                f"rebalance_protocol must be 'cooperative' or 'eager', got "
                f"{self.rebalance_protocol!r}",
                setting="rebalance_protocol",
            )
        delay = self.scheduled_rebalance_delay_ms
        bad_delay = isinstance(delay, bool) or not isinstance(delay, int) or delay < 0
        if delay is not None and bad_delay:
            raise ConfigError(
                f"scheduled_rebalance_delay_ms must be >= 0 milliseconds, got {delay!r}",
                setting="scheduled_rebalance_delay_ms",
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = ENV_PREFIX
    ) -> MemberSettings:
        """Read `<prefix><FIELD>` variables, e.g. RINGLEADER_SESSION_TIMEOUT_MS; `<prefix>GROUP_ID`
        is required."""
        return envmod.from_env(cls, environ, prefix=prefix)

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
    def cooperative(self) -> bool:
        return self.rebalance_protocol == "cooperative"

    @property
    def scheduled_rebalance_delay(self) -> float:
        """Seconds a departed static member's partitions are held back for it."""
        ms = self.scheduled_rebalance_delay_ms
        return (self.session_timeout_ms if ms is None else ms) / 1000.0

    @property
    def fence_margin(self) -> float:
        return self.fence_margin_ms / 1000.0
