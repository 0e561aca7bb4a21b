"""Whether this worker can serve partitions: the broker and Redis, checked before it joins the
group and Redis watched while it is a member.

A worker that cannot reach Redis can run nothing to completion (starts and completions are
recorded there), so holding partitions would only stall their tasks (DESIGN invariant 8):

* `preflight` — before joining: the broker and Redis must answer within
  `WorkerSettings.preflight_timeout` (retries logged with their reason); otherwise it raises
  `BrokerUnavailableError` / `RedisUnavailableError` and the worker exits 3 without ever
  joining the group. A refusal (credentials, TLS, ACL: `BrokerAuthError` / `RedisAuthError`)
  is not retried: the worker exits 2 at once, as for any other configuration error.
* `RedisHealth` — pure (time passed in): "redis ok" / "redis failed" at time t become the
  decisions LEAVE (failing for `redis_grace` seconds) and REJOIN (answering again after a
  LEAVE).
* `RedisProbe` — the thin thread: PINGs Redis every `interval` seconds on a client of its own
  with short timeouts, feeds `RedisHealth`, and pauses / resumes the group member.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis as redis_lib
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ringleader.access import check_kafka, check_redis
from ringleader.errors import BrokerUnavailableError, RedisUnavailableError
from ringleader.redisurl import redact
from ringleader.worker.settings import AppSettings

__all__ = ["Decision", "RedisHealth", "RedisProbe", "preflight"]

log = logging.getLogger("ringleader.worker.health")

PROBE_INTERVAL = 0.5
_PREFLIGHT_BACKOFF = (0.25, 2.0)  # first and longest pause between preflight attempts


class Decision(enum.Enum):
    LEAVE = "leave"
    REJOIN = "rejoin"


class RedisHealth:
    """Redis answers or not, at time t; when to leave the group and when to rejoin."""

    def __init__(self, grace: float) -> None:
        if not grace > 0:
            raise ValueError(f"grace must be > 0 seconds, got {grace!r}")
        self.grace = grace
        self.failing_since: float | None = None  # first failure of the current outage
        self.out = False  # LEAVE decided, no REJOIN yet
        self.last_error = ""

    def ok(self, now: float) -> Decision | None:
        self.failing_since = None
        if self.out:
            self.out = False
            return Decision.REJOIN
        return None

    def failed(self, now: float, error: str = "") -> Decision | None:
        self.last_error = error
        if self.failing_since is None:
            self.failing_since = now
        if not self.out and now - self.failing_since >= self.grace:
            self.out = True
            return Decision.LEAVE
        return None

    def outage(self, now: float) -> float:
        """Seconds the current outage has lasted (0 when Redis answers)."""
        return 0.0 if self.failing_since is None else now - self.failing_since


class Pausable(Protocol):
    """What the probe steers (a `coordinator.member.Member`)."""

    def pause(self, reason: str) -> None: ...

    def resume(self) -> None: ...


class RedisProbe:
    """A thread that PINGs Redis and pauses the member while Redis stays unreachable."""

    def __init__(
        self,
        url: str,
        member: Pausable,
        grace: float,
        *,
        interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._member = member
        self._health = RedisHealth(grace)
        self._interval = interval
        self._clock = clock
        # Short timeouts: a PING that hangs must count as a failure within the grace.
        timeout = max(0.2, min(1.0, grace / 2))
        self._client: redis_lib.Redis[bytes] = redis_lib.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="ringleader-redis-probe", daemon=True
        )

    @property
    def out(self) -> bool:
        """The member was told to leave because of Redis and not yet to rejoin."""
        return self._health.out

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self._interval)

    def check(self) -> Decision | None:
        """One PING, its decision carried out."""
        try:
            self._client.ping()
        except (redis_lib.RedisError, OSError) as e:
            now = self._clock()
            decision = self._health.failed(now, _text(e))
        else:
            now = self._clock()
            outage = self._health.outage(now)
            decision = self._health.ok(now)
        if decision is Decision.LEAVE:
            reason = (
                f"Redis at {redact(self.url)} unreachable for {self._health.outage(now):.1f}s "
                f"(grace {self._health.grace:g}s): {self._health.last_error}"
            )
            log.error("%s; leaving the group until it answers", reason)
            self._member.pause(reason)
        elif decision is Decision.REJOIN:
            log.warning(
                "Redis at %s answers again after %.1fs; rejoining the group",
                redact(self.url),
                outage,
            )
            self._member.resume()
        return decision


def preflight(
    settings: AppSettings,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until the broker and Redis answer, at most `timeout` seconds, logging each failed
    attempt; raise BrokerUnavailableError / RedisUnavailableError (naming what did not answer
    and why) when they still do not."""
    deadline = clock() + timeout
    pause = _PREFLIGHT_BACKOFF[0]
    attempt = 0
    while True:
        attempt += 1
        left = max(0.1, deadline - clock())
        problem = _check_broker(settings, min(5.0, left)) or _check_redis(settings, min(2.0, left))
        if problem is None:
            if attempt > 1:
                log.warning("preflight: the broker and Redis answer (attempt %d)", attempt)
            return
        error, message = problem
        if clock() >= deadline:
            raise error(
                f"{message}; gave up after {timeout:g}s (RINGLEADER_WORKER_PREFLIGHT_TIMEOUT)"
            )
        wait = min(pause, max(0.0, deadline - clock()))  # a last attempt at the deadline
        log.warning("preflight attempt %d: %s; retrying in %.2gs", attempt, message, wait)
        sleep(wait)
        pause = min(_PREFLIGHT_BACKOFF[1], pause * 2)


_Problem = tuple[type[BrokerUnavailableError] | type[RedisUnavailableError], str]


def _check_broker(settings: AppSettings, timeout: float) -> _Problem | None:
    # The wire first: it tells a refusal (BrokerAuthError, raised through) from absence.
    try:
        check_kafka(settings.bootstrap, settings.security, timeout)
    except BrokerUnavailableError as e:
        return BrokerUnavailableError, str(e)
    # log_level 2: librdkafka would print every refused connection; the reason is logged once.
    admin = AdminClient({**settings.librdkafka_config(), "log_level": 2})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as e:
        what = f"the broker at {settings.bootstrap} does not answer"
        return BrokerUnavailableError, f"{what}: {_text(e)}"
    return None


def _check_redis(settings: AppSettings, timeout: float) -> _Problem | None:
    try:
        # RedisAuthError (credentials, TLS, an ACL that denies our keys) is raised through.
        check_redis(settings.redis, timeout, namespace=settings.namespace)
    except RedisUnavailableError as e:
        return RedisUnavailableError, str(e)
    return None


def _text(e: BaseException) -> str:
    return str(e).rstrip(".") or type(e).__name__
