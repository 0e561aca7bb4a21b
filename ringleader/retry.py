"""The one retry policy: which failures are retried, how often, and after what delay.

Used for task retries (`@app.task(retries=..., backoff=...)`, across the fleet) and for calls
to downstream services (`Downstream`, within one attempt of a task). The delay is tenacity's
exponential wait plus uniform jitter, the formula of `tenacity.wait_exponential_jitter`
(initial * base**(attempt-1) + U(0, jitter), capped at `maximum`). The jitter comes from a
caller-supplied `random.Random` so the delay is a pure function of the attempt and the RNG
state (tenacity's own jitter draws from the global `random`).

`ringleader.worker.retry` and `ringleader.registry` re-export these classes.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ringleader.errors import ConfigError

if TYPE_CHECKING:
    import tenacity

__all__ = ["Backoff", "RetryPolicy"]


@functools.cache
def _retrying() -> tenacity.Retrying:
    """What a RetryCallState hangs on: tenacity wait strategies read only its attempt number.

    tenacity is imported here and in `Backoff.delay`, when a first delay is computed, not with
    this module, which every App and worker imports (about 10 ms on the 2-core VM).
    """
    import tenacity

    return tenacity.Retrying()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, in seconds."""

    initial: float = 0.5
    maximum: float = 60.0
    exp_base: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        for name in ("initial", "maximum", "jitter"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(
                    f"backoff.{name} must be a finite number >= 0, got {value!r}", setting=name
                )
        if not (isinstance(self.exp_base, int | float) and self.exp_base >= 1):
            raise ConfigError(
                f"backoff.exp_base must be >= 1, got {self.exp_base!r}", setting="exp_base"
            )

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        import tenacity  # lazy (see _retrying)

        wait = tenacity.wait_exponential(
            multiplier=self.initial, max=self.maximum, exp_base=self.exp_base
        )
        state = tenacity.RetryCallState(_retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return min(wait(state) + rng.uniform(0, self.jitter), self.maximum)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_retries` retries after the first attempt, for exceptions in `retry_on`.

    An exception whose `retriable` attribute is False (ringleader's and kafka-python's errors
    carry one) is never retried.
    """

    max_retries: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigError(
                f"retries must be an int, got {self.max_retries!r}", setting="max_retries"
            )
        if self.max_retries < 0:
            raise ConfigError(
                f"retries must be >= 0, got {self.max_retries}", setting="max_retries"
            )
        if not isinstance(self.backoff, Backoff):
            raise ConfigError(f"backoff must be a Backoff, got {self.backoff!r}", setting="backoff")

    @property
    def attempts(self) -> int:
        """Attempts in all: the first and its retries."""
        return self.max_retries + 1

    def is_retriable(self, exc: BaseException) -> bool:
        if not isinstance(exc, self.retry_on):
            return False
        return getattr(exc, "retriable", None) is not False

    def next_delay(self, attempt: int, exc: BaseException, rng: random.Random) -> float | None:
        """Delay before the next attempt after `attempt` failed with `exc`; None: give up."""
        if attempt > self.max_retries or not self.is_retriable(exc):
            return None
        return self.backoff.delay(attempt, rng)
