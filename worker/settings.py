"""Typed settings of an App (arq style): frozen dataclasses, `from_env`, validated on creation.

Explicit arguments win over the environment, which wins over the defaults. Every invalid value
raises `ConfigError` naming the setting (and the environment variable it came from).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ringleader.coordinator.settings import MemberSettings
from ringleader.worker.envelope import DEFAULT_MAX_PAYLOAD
from ringleader.worker.errors import ConfigError
from ringleader.worker.routing import MAX_NAMESPACE_LEN

ENV_PREFIX = "RINGLEADER_"
_NAMESPACE = re.compile(r"[A-Za-z0-9._-]+")
_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """TLS and SASL settings passed through to both Kafka clients."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        proto = self.security_protocol.upper()
        if proto not in _PROTOCOLS:
            raise ConfigError(
                f"security_protocol must be one of {sorted(_PROTOCOLS)}, "
                f"got {self.security_protocol!r}"
            )
        object.__setattr__(self, "security_protocol", proto)
        sasl = proto.startswith("SASL_")
        if sasl:
            mech = (self.sasl_mechanism or "").upper()
            if mech not in _MECHANISMS:
                raise ConfigError(
                    f"sasl_mechanism must be one of {sorted(_MECHANISMS)} with {proto}, "
                    f"got {self.sasl_mechanism!r}"
                )
            object.__setattr__(self, "sasl_mechanism", mech)
            if mech in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}:
                for name in ("sasl_username", "sasl_password"):
                    if not getattr(self, name):
                        raise ConfigError(f"{name} is required with sasl_mechanism {mech}")
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{name} is set but security_protocol is {proto} (no SASL)")
        if not proto.endswith("SSL"):
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{name} is set but security_protocol is {proto} (no TLS)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        env = os.environ if environ is None else environ
        values: dict[str, str | bool] = {}
        for f in dataclasses.fields(cls):
            var = ENV_PREFIX + f.name.upper()
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse_bool(var, raw) if f.type in (bool, "bool") else raw
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """RINGLEADER_* variables that `from_env` reads back as these settings."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                text = ("true" if value else "false") if isinstance(value, bool) else str(value)
                out[ENV_PREFIX + f.name.upper()] = text
        return out

    def librdkafka_config(self) -> dict[str, str]:
        """confluent-kafka (librdkafka) configuration keys."""
        conf = {"security.protocol": self.security_protocol}
        pairs = [
            ("sasl.mechanism", self.sasl_mechanism),
            ("sasl.username", self.sasl_username),
            ("sasl.password", self.sasl_password),
            ("ssl.ca.location", self.ssl_cafile),
            ("ssl.certificate.location", self.ssl_certfile),
            ("ssl.key.location", self.ssl_keyfile),
            ("ssl.key.password", self.ssl_key_password),
        ]
        conf.update({k: v for k, v in pairs if v is not None})
        if self.security_protocol.endswith("SSL"):
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        return conf

    def kafka_python_config(self) -> dict[str, str | bool]:
        """kafka-python keyword arguments (used by the membership adapter)."""
        conf: dict[str, str | bool] = {"security_protocol": self.security_protocol}
        pairs = [
            ("sasl_mechanism", self.sasl_mechanism),
            ("sasl_plain_username", self.sasl_username),
            ("sasl_plain_password", self.sasl_password),
            ("ssl_cafile", self.ssl_cafile),
            ("ssl_certfile", self.ssl_certfile),
            ("ssl_keyfile", self.ssl_keyfile),
            ("ssl_password", self.ssl_key_password),
        ]
        conf.update({k: v for k, v in pairs if v is not None})
        if self.security_protocol.endswith("SSL"):
            conf["ssl_check_hostname"] = self.ssl_check_hostname
        return conf


def _parse_bool(var: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{var} must be a boolean (true/false), got {raw!r}")


def _parse_int(var: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{var} must be an integer, got {raw!r}") from None


def _parse_float(var: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{var} must be a number, got {raw!r}") from None


def _pick(
    explicit: T | None, env: Mapping[str, str], name: str, parse: Callable[[str, str], T]
) -> T | None:
    if explicit is not None:
        return explicit
    var = ENV_PREFIX + name.upper()
    raw = env.get(var)
    if raw is None or raw == "":
        return None
    return parse(var, raw)


def _as_str(var: str, raw: str) -> str:
    return raw


@dataclass(frozen=True, slots=True)
class AppSettings:
    namespace: str = "ringleader"
    bootstrap: str = "127.0.0.1:9092"
    redis: str = "redis://127.0.0.1:6379/0"
    partitions: int = 12
    concurrency: int = 4  # handler threads per worker process
    result_ttl: float = 24 * 3600.0  # seconds results and statuses are kept
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def __post_init__(self) -> None:
        ns = self.namespace
        if not isinstance(ns, str) or not _NAMESPACE.fullmatch(ns) or ns in {".", ".."}:
            raise ConfigError(
                f"namespace must be letters, digits, '.', '_' or '-' (a Kafka topic prefix), "
                f"got {ns!r}"
            )
        if len(ns) > MAX_NAMESPACE_LEN:
            raise ConfigError(f"namespace must be at most {MAX_NAMESPACE_LEN} characters")
        _check_bootstrap(self.bootstrap)
        _check_redis_url(self.redis)
        _check_int("partitions", self.partitions, 1, 100_000)
        _check_int("concurrency", self.concurrency, 1, 10_000)
        _check_int("max_payload_bytes", self.max_payload_bytes, 64, 2**31 - 1)
        if isinstance(self.result_ttl, bool) or not (
            isinstance(self.result_ttl, int | float) and self.result_ttl > 0
        ):
            raise ConfigError(
                f"result_ttl must be a number of seconds > 0, got {self.result_ttl!r}"
            )
        if not isinstance(self.security, KafkaSecurity):
            raise ConfigError("security must be a KafkaSecurity")

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
        env = os.environ if environ is None else environ
        picked = {
            "namespace": _pick(namespace, env, "namespace", _as_str),
            "bootstrap": _pick(bootstrap, env, "bootstrap", _as_str),
            "redis": _pick(redis, env, "redis", _as_str),
            "partitions": _pick(partitions, env, "partitions", _parse_int),
            "concurrency": _pick(concurrency, env, "concurrency", _parse_int),
            "result_ttl": _pick(result_ttl, env, "result_ttl", _parse_float),
            "max_payload_bytes": _pick(max_payload_bytes, env, "max_payload_bytes", _parse_int),
            "security": security if security is not None else KafkaSecurity.from_env(env),
        }
        return cls(**{k: v for k, v in picked.items() if v is not None})  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """RINGLEADER_* variables that `from_env` reads back as these settings: what a child
        process (a worker started by a script) needs to get the same app settings."""
        out = {
            ENV_PREFIX + f.name.upper(): str(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "security"
        }
        return {**out, **self.security.to_env()}

    def librdkafka_config(self) -> dict[str, str]:
        """Connection settings for a confluent-kafka Producer/Consumer (bootstrap + security)."""
        return {"bootstrap.servers": self.bootstrap, **self.security.librdkafka_config()}


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def _check_bootstrap(value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"bootstrap must be 'host:port[,host:port...]', got {value!r}")
    for part in value.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bootstrap entry {part.strip()!r} is not host:port (in {value!r})")


def _check_redis_url(value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"redis must be a URL, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(f"redis must be a redis://, rediss:// or unix:// URL, got {value!r}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"redis URL has no host: {value!r}")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Runtime knobs of a worker process (RINGLEADER_WORKER_* in the environment)."""

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

    def __post_init__(self) -> None:
        if isinstance(self.started_status_after, bool) or not (
            isinstance(self.started_status_after, int | float) and self.started_status_after >= 0
        ):
            raise ConfigError(
                "worker setting started_status_after must be a number >= 0, "
                f"got {self.started_status_after!r}"
            )
        for name in ("drain_timeout", "commit_interval", "batch_ttl", "lease_duration"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"worker setting {name} must be a number > 0, got {value!r}")
        for name in ("max_outstanding", "fetch_batch", "record_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"worker setting {name} must be an integer >= 1, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = f"RINGLEADER_WORKER_{f.name.upper()}"
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                if f.type in (bool, "bool"):
                    values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                elif f.type in (int, "int"):
                    values[f.name] = int(raw)
                elif f.type in (float, "float"):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                raise ConfigError(f"{var} must be a {f.type}, got {raw!r}") from None
        return cls(**values)


def member_settings_from_env(
    namespace: str, worker_id: str, environ: Mapping[str, str] | None = None
) -> MemberSettings:
    """MemberSettings for the workers' group `<ns>.workers`; RINGLEADER_SESSION_TIMEOUT_MS etc.
    override the defaults."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("RINGLEADER_GROUP_ID", f"{namespace}.workers")
    env.setdefault("RINGLEADER_CLIENT_ID", f"ringleader-{worker_id}")
    return MemberSettings.from_env(env)
