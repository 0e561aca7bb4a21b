"""The root of ringleader's errors, and the errors every role can raise.

Every exception ringleader raises derives from `RingleaderError`, so callers can catch one
base. Like kafka-python's errors, each says whether retrying the same operation may succeed
(`retriable`, a class attribute; an instance may decide from its own fields, e.g. a broker
error code). The role packages keep their own errors (`ringleader.coordinator.errors`,
`ringleader.worker.errors`, `ringleader.registry.errors`), all derived from this root.

This module imports nothing from ringleader: every other module may import it.
"""

from __future__ import annotations

__all__ = [
    "BrokerAuthError",
    "BrokerUnavailableError",
    "ConfigError",
    "RedisAuthError",
    "RedisUnavailableError",
    "RingleaderError",
]


class RingleaderError(Exception):
    """Base of every error raised by ringleader."""

    retriable: bool = False


class ConfigError(RingleaderError, ValueError):
    """A setting has a value that cannot work; the message names the setting.

    `setting` is the name of the setting (a field name, or the environment variable the
    value came from) when the raiser knows it, for code that reports it apart from the text.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class BrokerUnavailableError(RingleaderError):
    """No broker of the bootstrap list answered within the deadline."""

    retriable = True


class BrokerAuthError(RingleaderError):
    """The broker refused this client: SASL authentication failed, or the TLS handshake did
    (unknown CA, hostname mismatch, a plaintext client on a TLS port). Retrying the same
    credentials cannot succeed; the message names the broker, protocol, mechanism and user,
    never the password."""

    retriable = False


class RedisUnavailableError(RingleaderError):
    """Redis could not be reached (connection refused, timed out, or lost)."""

    retriable = True


class RedisAuthError(RingleaderError):
    """Redis refused this client: a wrong password, an ACL that denies a command or key, or a
    failed TLS handshake. Not retriable; the message never shows the password."""

    retriable = False
