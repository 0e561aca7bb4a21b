"""Strict msgpack reading shared by the envelope, dead-letter and event formats.

Records are msgpack maps with string keys and a schema version under "v". Reading is strict:
exactly the expected keys, exact types, no trailing bytes, no extension types.
"""

from __future__ import annotations

from typing import Any, NoReturn

import msgpack

from ringleader.worker.errors import EnvelopeError

VERSION_KEY = "v"


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise EnvelopeError(f"msgpack extension type {code} is not allowed")


def pack(record: dict[str, Any]) -> bytes:
    """Pack a record; values that msgpack cannot encode raise EnvelopeError."""
    return pack_value(record)


def pack_value(value: Any) -> bytes:
    """One value as msgpack (strings as str, bytes as bin), as `pack` writes it in a record."""
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True)
        return data
    except (TypeError, ValueError, OverflowError) as e:
        raise EnvelopeError(f"not msgpack-serialisable: {e}") from e


def unpack_map(data: object, what: str, version: int) -> dict[str, Any]:
    """Decode `data` as one msgpack map of `version`; anything else raises EnvelopeError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EnvelopeError(f"{what} must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise EnvelopeError(f"{what} is empty")
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=True, ext_hook=_reject_ext, use_list=True
        )
    except EnvelopeError:
        raise
    except msgpack.ExtraData as e:
        raise EnvelopeError(f"{what} has {len(e.extra)} trailing bytes after the record") from e
    except UnicodeDecodeError as e:
        raise EnvelopeError(f"{what} contains a string that is not UTF-8: {e}") from e
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        # ValueError covers msgpack's FormatError/StackError and truncated input.
        raise EnvelopeError(f"{what} is not msgpack: {e}") from e
    if not isinstance(obj, dict):
        raise EnvelopeError(f"{what} must be a msgpack map, got {type(obj).__name__}")
    v = obj.get(VERSION_KEY)
    if type(v) is not int:
        raise EnvelopeError(f"{what} has no integer schema version under {VERSION_KEY!r}")
    if v != version:
        raise EnvelopeError(f"{what} has unsupported schema version {v} (expected {version})")
    return obj


def check_keys(obj: dict[str, Any], expected: frozenset[str], what: str) -> None:
    keys = obj.keys()
    if keys != expected:
        missing = sorted(expected - keys)
        unknown = sorted(str(k) for k in keys - expected)
        parts = []
        if missing:
            parts.append(f"missing fields {missing}")
        if unknown:
            parts.append(f"unknown fields {unknown}")
        raise EnvelopeError(f"{what}: {', '.join(parts)}")


def fail(what: str, field: str, expected: str, value: object) -> NoReturn:
    raise EnvelopeError(f"{what}: field {field!r} must be {expected}, got {type(value).__name__}")


def get_int(obj: dict[str, Any], field: str, what: str, minimum: int | None = None) -> int:
    value = obj[field]
    if type(value) is not int:
        fail(what, field, "an int", value)
    if minimum is not None and value < minimum:
        raise EnvelopeError(f"{what}: field {field!r} must be >= {minimum}, got {value}")
    return value


def get_str(obj: dict[str, Any], field: str, what: str, *, nonempty: bool = True) -> str:
    value = obj[field]
    if type(value) is not str:
        fail(what, field, "a string", value)
    if nonempty and not value:
        raise EnvelopeError(f"{what}: field {field!r} must not be empty")
    return value


def get_opt_str(obj: dict[str, Any], field: str, what: str, *, nonempty: bool = True) -> str | None:
    if obj[field] is None:
        return None
    return get_str(obj, field, what, nonempty=nonempty)


def get_time(obj: dict[str, Any], field: str, what: str) -> float:
    value = obj[field]
    # Producers in other languages may write whole seconds as ints; bools are not times.
    if type(value) is not float and type(value) is not int:
        fail(what, field, "a number", value)
    return float(value)


def get_opt_time(obj: dict[str, Any], field: str, what: str) -> float | None:
    if obj[field] is None:
        return None
    return get_time(obj, field, what)


def get_bytes(obj: dict[str, Any], field: str, what: str) -> bytes:
    value = obj[field]
    if type(value) is not bytes:
        fail(what, field, "bytes", value)
    return value
