"""Command handlers named by where they are, imported when the command runs.

The parser of `ringleader` is built for every invocation, `--help` and a mistyped option
included, so the modules that build it import only the standard library and small pure
modules. A subcommand's handler is `lazy("package.module:function")`: the handler's module
(and what it imports: confluent-kafka, kafka-python, redis, rich...) loads on the first call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["LazyHandler", "lazy"]


class LazyHandler:
    """A callable standing for `module:attr`; `resolve()` imports and returns the target."""

    __slots__ = ("_target", "ref")

    def __init__(self, ref: str) -> None:
        module, sep, attr = ref.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"a handler is named module:function, got {ref!r}")
        self.ref = ref
        self._target: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        if self._target is None:
            module, _, attr = self.ref.partition(":")
            target = getattr(importlib.import_module(module), attr)
            if not callable(target):
                raise TypeError(f"{self.ref} is not callable")
            self._target = target
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"lazy({self.ref!r})"


def lazy(ref: str) -> LazyHandler:
    """The handler at `ref` ("package.module:function"), imported on its first call."""
    return LazyHandler(ref)
