"""Typed settings of an App (arq style): frozen dataclasses, `from_env`, validated on creation.

Explicit arguments win over the environment, which wins over the defaults. The environment is
read by `ringleader.env` (the one parser of every settings class): a value that does not
parse, or that validation refuses, raises `ConfigError` naming the variable it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ringleader import env as envmod
from ringleader.coordinator.settings import MemberSettings
from ringleader.errors import ConfigError
from ringleader.redisurl import check_redis_url, redacted_repr
from ringleader.security import KafkaSecurity
from ringleader.worker.envelope import DEFAULT_MAX_PAYLOAD
from ringleader.worker.routing import MAX_NAMESPACE_LEN

ENV_PREFIX = envmod.ENV_PREFIX
WORKER_ENV_PREFIX = "RINGLEADER_WORKER_"
_NAMESPACE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class AppSettings:
    namespace: str = "ringleader"
    bootstrap: str = "127.0.0.1:9092"
    redis: str = "redis://127.0.0.1:6379/0"
    partitions: int = 12
    concurrency: int = 4  # handler threads per worker process
    result_ttl: float = 24 * 3600.0  # seconds results and statuses are kept
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD
    # Read by KafkaSecurity.from_env (its own RINGLEADER_<FIELD> variables), not as one variable.
    security: KafkaSecurity = field(default_factory=KafkaSecurity, metadata=envmod.env_names())

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __post_init__(self) -> None:
        _check_namespace(self.namespace)
        _check_bootstrap(self.bootstrap)
        check_redis_url(self.redis)
        _check_int("partitions", self.partitions, 1, 100_000)
        _check_int("concurrency", self.concurrency, 1, 10_000)
        _check_int("max_payload_bytes", self.max_payload_bytes, 64, 2**31 - 1)
        _check_number("result_ttl", self.result_ttl, "seconds > 0", lambda v: v > 0)
        if not isinstance(self.security, KafkaSecurity):
            raise ConfigError("security must be a KafkaSecurity", setting="security")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        namespace: str | None = None,
        bootstrap: str | None = None,
        redis: str | None = None,
        partitions: int | None = None,
        concurrency: int | None = None,
        result_ttl: float | None = None,
        max_payload_bytes: int | None = None,
        security: KafkaSecurity | None = None,
    ) -> AppSettings:
        """Settings from RINGLEADER_* variables, overridden by the explicit (non-None) args."""
        explicit = {
            "namespace": namespace,
            "bootstrap": bootstrap,
            "redis": redis,
            "partitions": partitions,
            "concurrency": concurrency,
            "result_ttl": result_ttl,
            "max_payload_bytes": max_payload_bytes,
            "security": security if security is not None else KafkaSecurity.from_env(environ),
        }
        return envmod.from_env(cls, environ, explicit=explicit)

    def to_env(self) -> dict[str, str]:
        """RINGLEADER_* variables that `from_env` reads back as these settings: what a child
        process (a worker started by a script) needs to get the same app settings."""
        return {**envmod.to_env(self), **self.security.to_env()}

    def librdkafka_config(self) -> dict[str, str]:
        """Connection settings for a confluent-kafka Producer/Consumer (bootstrap + security)."""
        return {"bootstrap.servers": self.bootstrap, **self.security.librdkafka_config()}


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < lo
        or (hi is not None and value > hi)
    ):
        bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name} must be an integer {bounds}, got {value!r}", setting=name)


def _check_number(name: str, value: object, what: str, ok: Callable[[float], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
        raise ConfigError(f"{name} must be a number of {what}, got {value!r}", setting=name)


def _check_namespace(ns: object) -> None:
    if not isinstance(ns, str) or not _NAMESPACE.fullmatch(ns) or ns in {".", ".."}:
        raise ConfigError(
            f"namespace must be letters, digits, '.', '_' or '-' (a Kafka topic prefix), "
            f"got {ns!r}",
            setting="namespace",
        )
    if len(ns) > MAX_NAMESPACE_LEN:
        raise ConfigError(
            f"namespace must be at most {MAX_NAMESPACE_LEN} characters", setting="namespace"
        )


def _check_bootstrap(value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"bootstrap must be 'host:port[,host:port...]', got {value!r}", setting="bootstrap"
        )
    for part in value.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"bootstrap entry {part.strip()!r} is not host:port (in {value!r})",
                setting="bootstrap",
            )


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Runtime knobs of a worker process (RINGLEADER_WORKER_<FIELD> in the environment)."""

    drain_timeout: float = 10.0  # on revoke/stop: how long running tasks may take to finish
    commit_interval: float = 0.5  # seconds between offset commits
    max_outstanding: int = 5000  # tasks held (queued, parked) before fetching pauses
    # At most this many tasks (never fewer than the concurrency) run without their completion
    # recorded: the bound on duplicate executions if the worker dies. Long tasks never fill it
    # (the handler threads bound them); for short ones it is the size of a group commit.
    record_window: int = 64
    fetch_batch: int = 500
    # A batch whose commit is not in the log this long after its first task was seen (read to
    # the log's end) is abandoned; keep it well above producers' commit timeout.
    batch_ttl: float = 60.0
    events: bool = True  # produce task events to <ns>.events
    # The "started" status is written for tasks still running this many seconds after they
    # began (short tasks then cost no status write; their completion is their status).
    started_status_after: float = 0.1
    registry_prefix: str = "ringleader:registry"
    lease_duration: float = 15.0
    # A task whose runs died with their worker this many times is dead-lettered, not run
    # again (DESIGN.md's RINGLEADER_CRASH_LIMIT). 0 turns the start records off: no Redis
    # round trip before each run (no-op tasks ran ~3x faster, README), no quarantine.
    crash_limit: int = field(default=2, metadata=envmod.env_names("RINGLEADER_CRASH_LIMIT"))
    # Redis unanswered this long while holding partitions: the worker leaves the group (the
    # others take them; it cannot record completions) and rejoins once Redis answers again.
    redis_grace: float = 5.0
    # At start: how long the broker and Redis may take to answer before the worker gives up
    # (exit 3) instead of joining the group.
    preflight_timeout: float = 30.0

    def __post_init__(self) -> None:
        after = self.started_status_after
        _check_number("started_status_after", after, "seconds >= 0", lambda v: v >= 0)
        seconds = ("drain_timeout", "commit_interval", "batch_ttl", "lease_duration")
        for name in (*seconds, "redis_grace", "preflight_timeout"):
            _check_number(name, getattr(self, name), "seconds > 0", lambda v: v > 0)
        for name in ("max_outstanding", "fetch_batch", "record_window"):
            _check_int(name, getattr(self, name), 1)
        _check_int("crash_limit", self.crash_limit, 0)
        if not isinstance(self.events, bool):
            raise ConfigError(f"events must be a bool, got {self.events!r}", setting="events")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        return envmod.from_env(cls, environ, prefix=WORKER_ENV_PREFIX)


def member_settings_from_env(
    namespace: str, worker_id: str, environ: Mapping[str, str] | None = None
) -> MemberSettings:
    """MemberSettings for the workers' group `<ns>.workers`; RINGLEADER_SESSION_TIMEOUT_MS etc.
    override the defaults."""
    env = dict(os.environ if environ is None else environ)
    # Empty counts as unset, as everywhere in `ringleader.env`.
    env["RINGLEADER_GROUP_ID"] = env.get("RINGLEADER_GROUP_ID") or f"{namespace}.workers"
    env["RINGLEADER_CLIENT_ID"] = env.get("RINGLEADER_CLIENT_ID") or f"ringleader-{worker_id}"
    return MemberSettings.from_env(env)
