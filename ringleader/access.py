"""Can this client get in? The broker and Redis checked up front, refusal told apart from
absence.

A refusal (wrong password, unknown CA, hostname mismatch, a TLS port spoken to in plaintext,
an ACL denial) raises `BrokerAuthError` / `RedisAuthError` at once: retrying the same
credentials cannot help, so the worker and the CLI stop with one line that names the broker,
the mechanism and the user, never the password. Absence (nothing listening, a broker still
starting) raises the retriable `BrokerUnavailableError` / `RedisUnavailableError`.
"""

from __future__ import annotations

import ssl
import time

import redis as redis_lib

from ringleader.coordinator.connection import Connection, parse_bootstrap
from ringleader.errors import (
    BrokerAuthError,
    BrokerUnavailableError,
    RedisAuthError,
    RedisUnavailableError,
)
from ringleader.redisurl import redact
from ringleader.security import KafkaSecurity, tls_refusal

__all__ = ["check_kafka", "check_redis"]

# A broker that accepts the TCP connection and then closes it before answering ApiVersions,
# this many times in a row, is a TLS listener spoken to in plaintext (or the reverse).
_CLOSED_BEFORE_ANSWER = 3
_CLOSED_WORDS = ("reset by peer", "Connection closed by server")


def check_kafka(bootstrap: str, security: KafkaSecurity, timeout: float) -> None:
    """Return once one bootstrap broker answers ApiVersions with these credentials."""
    deadline = time.monotonic() + timeout
    reasons: list[str] = []
    closed, other = 0, 0
    while True:
        for host, port in parse_bootstrap(bootstrap):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            conn = Connection(host, port, connect_timeout=min(left, 5.0), security=security)
            try:
                conn.api_versions()
                return
            except BrokerUnavailableError as e:
                reasons.append(str(e))
                if _closed_early(str(e)):
                    closed += 1
                elif "timed out" not in str(e):  # the last attempt may be cut by the deadline
                    other += 1
            finally:
                conn.close()
        if time.monotonic() + 0.2 >= deadline:
            # Hung up on before answering, every time for the whole timeout: a listener of
            # another protocol, not a broker restarting (which refuses, or hangs up briefly).
            if closed >= _CLOSED_BEFORE_ANSWER and not other:
                raise BrokerAuthError(f"{reasons[-1]}; {_closed_hint(security)}")
            raise BrokerUnavailableError(
                f"no broker of {bootstrap} answered within {timeout:g}s: "
                + (reasons[-1] if reasons else "no attempt")
            )
        time.sleep(0.2)


def _closed_hint(security: KafkaSecurity) -> str:
    sec = security.describe()
    if security.sasl_mechanism:
        # kafka.net can see the broker's close before the SaslAuthenticate answer it follows.
        return (
            "the broker closes the connection during the handshake: are the credentials "
            f"wrong (authentication failed?) or is the listener not {sec}?"
        )
    return (
        "the broker closes the connection before answering: is its listener TLS or SASL "
        f"while this client uses {sec} (RINGLEADER_SECURITY_PROTOCOL)?"
    )


def _closed_early(reason: str) -> bool:
    low = reason.lower()
    # "invalid frame length": a TLS alert record (0x1503...) read as a Kafka frame size.
    words = ("closed", "reset", "eof", "disconn", "invalid frame length")
    return "connect failed" in low and any(w in low for w in words)


class _HungUp(RedisUnavailableError):
    """Accepted, then cut at the first command."""


def check_redis(url: str, timeout: float, *, namespace: str | None = None) -> None:
    """Return once Redis answers PING for this URL's user; with `namespace`, once it also
    lets the user write a key of that namespace (what an ACL confines). A server that hangs
    up at the first command for the whole timeout is a TLS port spoken to in plaintext."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _check_redis_once(url, max(0.1, deadline - time.monotonic()), namespace)
            return
        except _HungUp as e:
            if time.monotonic() + 0.2 >= deadline:
                raise RedisAuthError(
                    f"Redis at {redact(url)} closes the connection at the first command: is "
                    f"it a TLS port (rediss://)? {e.__cause__}"
                ) from None
            time.sleep(0.2)


def _check_redis_once(url: str, timeout: float, namespace: str | None) -> None:
    client: redis_lib.Redis[bytes] = redis_lib.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    shown = redact(url)
    try:
        client.ping()
        if namespace is not None:
            client.set(f"ringleader:{namespace}:access-check", b"1", px=5000)
    except (redis_lib.AuthenticationError, redis_lib.exceptions.NoPermissionError) as e:
        raise RedisAuthError(f"Redis at {shown} refused user {_user(url)}: {e}") from None
    except redis_lib.exceptions.ReadOnlyError as e:
        raise RedisUnavailableError(f"Redis at {shown} is read-only: {e}") from None
    except redis_lib.ResponseError as e:
        if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
            raise RedisAuthError(f"Redis at {shown} refused user {_user(url)}: {e}") from None
        raise RedisUnavailableError(f"Redis at {shown}: {e}") from None
    except (redis_lib.RedisError, OSError) as e:
        if _tls_failure(e):
            raise RedisAuthError(f"Redis at {shown}: TLS handshake failed: {e}") from None
        if url.startswith("redis://") and any(w in str(e) for w in _CLOSED_WORDS):
            raise _HungUp(f"Redis at {shown} hung up") from e
        raise RedisUnavailableError(f"Redis at {shown} does not answer: {e}") from None
    finally:
        client.close()


def _tls_failure(e: BaseException) -> bool:
    """A TLS refusal (certificate, protocol) anywhere in the chain; an EOF or reset in the
    handshake is a server going away, retried as absence."""
    seen: BaseException | None = e
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or tls_refusal(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _user(url: str) -> str:
    from urllib.parse import urlsplit

    return repr(urlsplit(url).username or "default")
