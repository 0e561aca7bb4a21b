"""One reader of RINGLEADER_* environment variables for every settings class.

Settings are frozen dataclasses (arq style). `from_env(cls, environ)` reads each field from
`<prefix><FIELD>` (or the variables named in the field's metadata, see `env_names`), parses
it by the field's annotated type and builds the class, so a bad value fails the same way for
App, worker, member and registry settings alike:

* a variable that is absent or empty leaves the field at its default (shells and compose
  files export empty variables for "unset");
* a value that does not parse as the field's type (bool, int, float) raises `ConfigError`
  naming the variable, e.g. ``RINGLEADER_PARTITIONS must be an integer, got 'twelve'``;
* a value the class's own validation refuses (a `ConfigError` whose `setting` is the field)
  is reported with the variable it came from prefixed.

`to_env(settings)` writes the variables `from_env` reads back as the same settings: what a
child process needs to be configured like its parent.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ringleader.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "env_names",
    "from_env",
    "parse_bool",
    "parse_float",
    "parse_int",
    "to_env",
    "variables",
]

ENV_PREFIX = "RINGLEADER_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_META = "ringleader.env"

T = TypeVar("T")
Parser = Callable[[str, str], Any]


def parse_bool(var: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(
        f"{var} must be a boolean (true/false, yes/no, on/off, 1/0), got {raw!r}", setting=var
    )


def parse_int(var: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{var} must be an integer, got {raw!r}", setting=var) from None


def parse_float(var: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var} must be a number, got {raw!r}", setting=var) from None
    if not math.isfinite(value):  # float() accepts "nan" and "inf"; no setting wants them
        raise ConfigError(f"{var} must be a finite number, got {raw!r}", setting=var)
    return value


def _parse_str(var: str, raw: str) -> str:
    return raw


_PARSERS: dict[object, Parser] = {
    bool: parse_bool,
    int: parse_int,
    float: parse_float,
    str: _parse_str,
}


def env_names(*names: str) -> dict[str, tuple[str, ...]]:
    """Field metadata: read the field from these variables (the first one set wins) instead
    of `<prefix><FIELD>`; with no names the field is not read from the environment."""
    return {_META: names}


def variables(f: dataclasses.Field[Any], prefix: str = ENV_PREFIX) -> tuple[str, ...]:
    """The variables a field is read from, in order of precedence."""
    names: tuple[str, ...] | None = f.metadata.get(_META)
    return (prefix + f.name.upper(),) if names is None else names


def _parser(hint: object, where: str) -> Parser:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint  # `X | None`: parse as X
    parser = _PARSERS.get(hint)
    if parser is None:  # a programming error: the caller must pass such fields explicitly
        raise TypeError(f"{where}: no environment parser for {hint!r}")
    return parser


def _lookup(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for var in names:
        raw = env.get(var)
        if raw:  # absent and empty both mean "unset"
            return var, raw
    return None


def from_env(
    cls: type[T],
    environ: Mapping[str, str] | None = None,
    *,
    prefix: str = ENV_PREFIX,
    explicit: Mapping[str, object] | None = None,
) -> T:
    """Build the dataclass `cls` from the environment (default: os.environ).

    `explicit` values that are not None win over the environment (a constructor or CLI
    argument); fields without a default must be set one way or the other.
    """
    env = os.environ if environ is None else environ
    given = {k: v for k, v in (explicit or {}).items() if v is not None}
    hints = typing.get_type_hints(cls)
    values: dict[str, object] = {}
    source: dict[str, str] = {}
    for f in dataclasses.fields(typing.cast(Any, cls)):
        if f.name in given:
            values[f.name] = given[f.name]
            continue
        names = variables(f, prefix)
        found = _lookup(env, names)
        if found is None:
            required = f.default is dataclasses.MISSING and (
                f.default_factory is dataclasses.MISSING
            )
            if required:
                what = names[0] if names else f.name
                raise ConfigError(f"{what} is not set", setting=what)
            continue
        var, raw = found
        values[f.name] = _parser(hints[f.name], f"{cls.__name__}.{f.name}")(var, raw)
        source[f.name] = var
    factory: Callable[..., T] = cls
    try:
        return factory(**values)
    except ConfigError as e:
        origin = source.get(e.setting) if e.setting is not None else None
        if origin is None:
            raise
        raise ConfigError(f"{origin}: {e}", setting=origin) from None


def to_env(settings: object, prefix: str = ENV_PREFIX) -> dict[str, str]:
    """The variables `from_env` reads back as `settings` (None fields are left out; fields
    holding other settings objects are the caller's to add)."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(typing.cast(Any, settings)):
        names = variables(f, prefix)
        value = getattr(settings, f.name)
        if not names or value is None or dataclasses.is_dataclass(value):
            continue
        out[names[0]] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out
