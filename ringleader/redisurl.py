"""Validation of Redis URLs for every settings class (App, worker, registry).

A URL is checked when the settings are built, by the parser the connection will use
(redis-py's `parse_url`), so a bad port, database or query option is a `ConfigError` naming
the setting, not a `ValueError` traceback when the first connection is made. Messages never
show the password: a URL may carry one (`redis://user:secret@host`).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from urllib.parse import urlsplit, urlunsplit

from ringleader.errors import ConfigError

__all__ = ["check_redis_url", "redact", "redacted_repr"]

_SCHEMES = frozenset({"redis", "rediss", "unix"})


def redact(url: str) -> str:
    """`url` with its password (if any) replaced by `***`: safe for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:***@{host}")
    if "password=" in parts.query:  # redis-py also reads ?password=
        query = "&".join(
            "password=***" if q.startswith("password=") else q for q in parts.query.split("&")
        )
        parts = parts._replace(query=query)
    return urlunsplit(parts)


def redacted_repr(obj: object) -> str:
    """A dataclass's repr with the password of every URL field shown as `***` (settings
    reprs end up in logs and tracebacks)."""
    assert is_dataclass(obj)
    shown = []
    for f in fields(obj):
        if not f.repr:
            continue
        value = getattr(obj, f.name)
        if isinstance(value, str) and "://" in value:
            value = redact(value)
        shown.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(shown)})"


def check_redis_url(value: object, *, setting: str = "redis") -> None:
    """Raise ConfigError (with `setting`) unless `value` is a Redis URL redis-py accepts."""
    if not isinstance(value, str):
        raise ConfigError(f"{setting} must be a URL, got {type(value).__name__}", setting=setting)
    shown = redact(value)
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for "host:notaport" or a port out of range
    except ValueError as e:
        raise ConfigError(
            f"{setting} {shown!r} is not a valid Redis URL: {e}", setting=setting
        ) from None
    if parts.scheme not in _SCHEMES:
        raise ConfigError(
            f"{setting} must be a redis://, rediss:// or unix:// URL, got {shown!r}",
            setting=setting,
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{setting} {shown!r} is not a valid Redis URL: no host", setting=setting)
    if port == 0:
        raise ConfigError(f"{setting} {shown!r} is not a valid Redis URL: port 0", setting=setting)
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        # redis-py would silently use database 0 for "/x".
        raise ConfigError(
            f"{setting} {shown!r} is not a valid Redis URL: the database must be a number "
            "(redis://host:port/N)",
            setting=setting,
        )
    # Imported here, not at the top: `import redis` loads redis.asyncio and asyncio too (0.15-
    # 0.25 s on the 2-core VM), which `import ringleader.worker.run` and a module that only
    # declares an App need not pay; the first settings checked pay it.
    from redis.connection import parse_url

    try:
        parse_url(value)  # the database number and query options, as the connection reads them
    except ValueError as e:
        raise ConfigError(
            f"{setting} {shown!r} is not a valid Redis URL: {e}", setting=setting
        ) from None
