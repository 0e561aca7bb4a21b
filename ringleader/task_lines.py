"""One task given as text: a line of `submit --from-file` (a JSON object), and the values of
`submit`'s --args, --kwargs and --eta.

A line is a JSON object: `name` (a non-empty string), `args` (an array), `kwargs` (an
object), and optionally `key` (a string), `priority` (high, normal, low or an integer, as
`submit --priority`), `idempotency_key` (a non-empty string), and `delay` (seconds from when
the line is read) or `eta` (ISO 8601 with a UTC offset). Every field but `name` may be null,
meaning not given. No broker, no Redis: the payload size and msgpack's limits are checked
when packing (`submit_file`).
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from typing import Any

import msgspec

from ringleader.packing import TaskSpec
from ringleader.worker.errors import EnvelopeError
from ringleader.worker.lanes import priority_value

__all__ = ["FIELDS", "LineRefused", "json_option", "parse_eta", "parse_line"]

FIELDS = frozenset({"name", "args", "kwargs", "key", "priority", "idempotency_key", "delay", "eta"})
_PLAIN = frozenset({"name", "args", "kwargs"})
# TaskSpec(...) without the NamedTuple's Python-level __new__ (a third of the checks' cost).
_new = tuple.__new__
_ALLOWED = ", ".join(sorted(FIELDS))


class LineRefused(ValueError):
    """A line that cannot be a task; the message says why."""


# --- one line -------------------------------------------------------------------------------


class _PlainLine(msgspec.Struct, forbid_unknown_fields=True):
    """The common line, checked while decoding (in C): a name, args, kwargs, nothing else."""

    name: str
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None


_plain_line = msgspec.json.Decoder(_PlainLine).decode


def parse_line(raw: bytes | str, now: float | None = None) -> TaskSpec:
    """The TaskSpec of one line, or LineRefused. `now` (epoch seconds; default the clock) is
    what `delay` counts from. Payload size and msgpack limits are checked when packing."""
    try:
        line = _plain_line(raw)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        pass  # options, or a line to refuse: the checks below say which, and why
    else:
        if line.name:
            args = [] if line.args is None else line.args
            kwargs = {} if line.kwargs is None else line.kwargs
            return _new(TaskSpec, (line.name, args, kwargs, None, 0, None, None))
    return _checked_line(raw, now)


def _checked_line(raw: bytes | str, now: float | None) -> TaskSpec:
    obj = _json_object(raw)
    keys = obj.keys()
    if not keys <= FIELDS:
        unknown = ", ".join(repr(k) for k in sorted(keys - FIELDS))
        raise LineRefused(f"unknown field(s) {unknown}; allowed: {_ALLOWED}")
    name = obj.get("name")
    if type(name) is not str or not name:
        if name is None:
            raise LineRefused('no "name"')
        raise LineRefused(f"name must be a non-empty string, got {_kind(name)}")
    args = obj.get("args")
    if args is None:
        args = []
    elif type(args) is not list:
        raise LineRefused(f"args must be an array, got {_kind(args)}")
    kwargs = obj.get("kwargs")
    if kwargs is None:
        kwargs = {}
    elif type(kwargs) is not dict:
        raise LineRefused(f"kwargs must be an object, got {_kind(kwargs)}")
    if keys <= _PLAIN:  # the common line: nothing else to check
        return _new(TaskSpec, (name, args, kwargs, None, 0, None, None))
    return _with_options(obj, name, args, kwargs, now)


# json.loads without its per-call checks (what it calls for a str and no options).
_decode = json.JSONDecoder().decode
# msgspec decodes a line in about a quarter of the stdlib's time (1.1 against 4.7 us here),
# which is what parsing costs next to submitting; it keeps big integers exact (orjson would
# turn them into floats). A line it refuses is decoded again by the stdlib, whose verdict
# and error message stand: the fast path changes no outcome, only the time.
_fast_decode = msgspec.json.decode


def _json_object(raw: bytes | str) -> dict[str, Any]:
    try:
        obj = _fast_decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return _json_object_slowly(raw)
    if type(obj) is not dict:
        raise LineRefused(f"expected a JSON object, got {_kind(obj)}")
    return obj


def _json_object_slowly(raw: bytes | str) -> dict[str, Any]:
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise LineRefused(f"not UTF-8: byte {raw[e.start]:#04x} at column {e.start + 1}") from None
    try:
        obj = _decode(text)
    except json.JSONDecodeError as e:  # its own "line 1" would confuse: the text is one line
        where = "the end" if e.pos >= len(text.rstrip()) else f"column {e.pos + 1}"
        raise LineRefused(f"not JSON: {e.msg} at {where}") from None
    except RecursionError:
        raise LineRefused("not JSON: nested too deeply") from None
    if type(obj) is not dict:
        raise LineRefused(f"expected a JSON object, got {_kind(obj)}")
    return obj


def _with_options(
    obj: dict[str, Any], name: str, args: list[Any], kwargs: dict[str, Any], now: float | None
) -> TaskSpec:
    key = obj.get("key")
    if key is not None and type(key) is not str:
        raise LineRefused(f"key must be a string, got {_kind(key)}")
    ikey = obj.get("idempotency_key")
    if ikey is not None and (type(ikey) is not str or not ikey):
        raise LineRefused(f"idempotency_key must be a non-empty string, got {_kind(ikey)}")
    priority = _priority(obj.get("priority"))
    not_before = _not_before(obj.get("delay"), obj.get("eta"), now)
    return TaskSpec(name, args, kwargs, key, priority, ikey, not_before)


def _priority(value: object) -> int:
    if value is None:
        return 0
    if type(value) is int:
        return value
    if type(value) is str:
        try:
            return priority_value(value)
        except ValueError as e:
            raise LineRefused(str(e)) from None
    raise LineRefused(f"priority must be high, normal, low or an integer, got {_kind(value)}")


def _not_before(delay: object, eta: object, now: float | None) -> float | None:
    if delay is not None and eta is not None:
        raise LineRefused("give delay or eta, not both")
    if delay is not None:
        if type(delay) is not int and type(delay) is not float:
            raise LineRefused(f"delay must be a number of seconds, got {_kind(delay)}")
        if not (delay >= 0 and math.isfinite(delay)):
            raise LineRefused(f"delay must be >= 0 seconds, got {delay!r}")
        return (time.time() if now is None else now) + delay
    if eta is not None:
        if type(eta) is not str:
            raise LineRefused(f"eta must be an ISO 8601 string, got {_kind(eta)}")
        try:
            return parse_eta(eta, "eta").timestamp()
        except EnvelopeError as e:
            raise LineRefused(str(e)) from None
    return None


def parse_eta(text: str, what: str = "--eta") -> datetime:
    """An ISO 8601 time with a UTC offset; EnvelopeError naming `what` otherwise."""
    try:
        eta = datetime.fromisoformat(text)
    except ValueError:
        raise EnvelopeError(f"{what} {text!r} is not an ISO 8601 time") from None
    if eta.tzinfo is None:
        raise EnvelopeError(f"{what} {text!r} needs a UTC offset, e.g. 2026-12-02T15:00:00+00:00")
    return eta


_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _kind(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if type(value) is int or type(value) is float:
        return f"the number {value!r}"
    return _KINDS.get(type(value), type(value).__name__)


def json_option(text: str, option: str, kind: type) -> Any:
    """The value of a JSON option (`submit --args`, `--kwargs`): EnvelopeError if it is not
    JSON or not of `kind` (list or dict)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise EnvelopeError(f"{option} is not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, kind):
        want = "an array" if kind is list else "an object"
        raise EnvelopeError(f"{option} must be {want} in JSON, got {type(value).__name__}")
    return value
