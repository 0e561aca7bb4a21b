"""Task retries: the one `RetryPolicy`/`Backoff` (defined in `ringleader.retry`, shared with
downstream calls) and how `@app.task(backoff=...)` spells a backoff."""

from __future__ import annotations

from ringleader.errors import ConfigError
from ringleader.retry import Backoff, RetryPolicy

__all__ = ["Backoff", "RetryPolicy", "as_backoff"]


def as_backoff(value: float | Backoff) -> Backoff:
    """`@app.task(backoff=...)` accepts a Backoff or a number (the initial delay)."""
    if isinstance(value, Backoff):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"backoff must be a number of seconds or a Backoff, got {value!r}", setting="backoff"
        )
    return Backoff(initial=float(value))
