"""`KafkaSecurity`: TLS and SASL settings of every Kafka connection, set once.

One value configures all of them: the confluent-kafka clients (task producer and consumers,
events, dead letters, both 2PC logs, the admin client) through `librdkafka_config()`, and the
group-membership and offset wire (kafka-python's `kafka.net` connection layer, see
`coordinator.connection`) through `kafka_python_config()`. Passwords never appear in `repr`,
in `describe()` or in any error built from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ringleader import env as envmod
from ringleader.errors import ConfigError

__all__ = ["MECHANISMS", "PROTOCOLS", "KafkaSecurity", "tls_refusal"]

PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
# What both connection layers implement and the tests prove against Apache Kafka.
MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
# TLS failures that say the server refuses these settings (certificates, protocol), as against
# an EOF or a reset mid-handshake, which a server going down causes too.
_REFUSED_TLS = (
    "CERTIFICATE_VERIFY_FAILED",
    "ALERT_BAD_CERTIFICATE",
    "ALERT_UNKNOWN_CA",
    "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_HANDSHAKE_FAILURE",
    "WRONG_VERSION_NUMBER",
)


def tls_refusal(text: str) -> bool:
    """Whether a TLS error's text says the peer refuses these settings (retrying cannot help),
    rather than that the connection broke."""
    return any(s in text for s in _REFUSED_TLS)


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """TLS and SASL settings (RINGLEADER_SECURITY_PROTOCOL, RINGLEADER_SASL_USERNAME, ...).

    PLAINTEXT, SSL (server CA, optional client certificate), SASL_PLAINTEXT and SASL_SSL with
    PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Hostname checking is on unless turned off.
    """

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
        if proto not in PROTOCOLS:
            raise ConfigError(
                f"security_protocol must be one of {sorted(PROTOCOLS)}, "
                f"got {self.security_protocol!r}",
                setting="security_protocol",
            )
        object.__setattr__(self, "security_protocol", proto)
        if proto.startswith("SASL_"):
            object.__setattr__(self, "sasl_mechanism", self._checked_mechanism(proto))
        else:
            self._refuse_set(("sasl_mechanism", "sasl_username", "sasl_password"), proto, "SASL")
        if proto.endswith("SSL"):
            self._check_files()
        else:
            self._refuse_set((*_FILES, "ssl_key_password"), proto, "TLS")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError("ssl_keyfile is set without ssl_certfile", setting="ssl_certfile")

    def _checked_mechanism(self, proto: str) -> str:
        mech = (self.sasl_mechanism or "").upper()
        if mech not in MECHANISMS:
            raise ConfigError(
                f"sasl_mechanism must be one of {sorted(MECHANISMS)} with {proto}, "
                f"got {self.sasl_mechanism!r}",
                setting="sasl_mechanism",
            )
        for name in ("sasl_username", "sasl_password"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required with sasl_mechanism {mech}", setting=name)
        return mech

    def _refuse_set(self, names: tuple[str, ...], proto: str, what: str) -> None:
        for name in names:
            if getattr(self, name) is not None:
                raise ConfigError(
                    f"{name} is set but security_protocol is {proto} (no {what})", setting=name
                )

    def _check_files(self) -> None:
        # A missing CA file would otherwise surface as a TLS error on the first connection.
        for name in _FILES:
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"{name} {path!r} is not a readable file", setting=name)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """RINGLEADER_<FIELD> variables, e.g. RINGLEADER_SASL_MECHANISM."""
        return envmod.from_env(cls, environ)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> KafkaSecurity:
        """The fields found in `values` (e.g. `ringleader local up --secure --json`); other
        keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """RINGLEADER_* variables that `from_env` reads back as these settings."""
        return envmod.to_env(self)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def describe(self) -> str:
        """Protocol, mechanism and user for messages: never the password."""
        parts = [self.security_protocol]
        if self.sasl_mechanism:
            parts.append(f"{self.sasl_mechanism} user {self.sasl_username!r}")
        if self.ssl_certfile:
            parts.append("client certificate")
        return " ".join(parts)

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
        if self.uses_tls:
            conf["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        return conf

    def kafka_python_config(self) -> dict[str, str | bool]:
        """kafka-python keyword arguments (its `kafka.net` connection layer)."""
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
        if self.uses_tls:
            conf["ssl_check_hostname"] = self.ssl_check_hostname
        return conf
