"""The App: settings plus the task registry. Workers and clients are built from it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, overload

from ringleader.security import KafkaSecurity
from ringleader.worker.retry import Backoff, RetryPolicy, as_backoff
from ringleader.worker.routing import Topics, topics
from ringleader.worker.settings import AppSettings
from ringleader.worker.tasks import Task, TaskRegistry, default_task_name

if TYPE_CHECKING:
    from ringleader.registry.breakers import BreakerSettings
    from ringleader.registry.downstream import Downstream
    from ringleader.registry.downstream import RetryPolicy as CallRetryPolicy


class App:
    """`App(namespace=..., bootstrap=..., redis=..., partitions=12)`.

    Each argument left as None comes from RINGLEADER_* in the environment, then the default.
    """

    def __init__(
        self,
        namespace: str | None = None,
        bootstrap: str | None = None,
        redis: str | None = None,
        partitions: int | None = None,
        *,
        concurrency: int | None = None,
        result_ttl: float | None = None,
        max_payload_bytes: int | None = None,
        security: KafkaSecurity | None = None,
        settings: AppSettings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if settings is None:
            settings = AppSettings.from_env(
                environ,
                namespace=namespace,
                bootstrap=bootstrap,
                redis=redis,
                partitions=partitions,
                concurrency=concurrency,
                result_ttl=result_ttl,
                max_payload_bytes=max_payload_bytes,
                security=security,
            )
        self.settings = settings
        self.registry = TaskRegistry()
        self._downstream: Downstream | None = None
        self._downstream_factory: Callable[[], Downstream] | None = None
        self._downstream_lock = threading.Lock()

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    @property
    def topics(self) -> Topics:
        return topics(self.settings.namespace)

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retries: int = 3,
        backoff: float | Backoff | None = None,
        timeout: float | None = None,
        bind: bool = False,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        retries: int = 3,
        backoff: float | Backoff | None = None,
        timeout: float | None = None,
        bind: bool = False,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a task: `@app.task` or `@app.task(name=..., retries=..., bind=True)`."""
        policy = RetryPolicy(
            max_retries=retries,
            backoff=Backoff() if backoff is None else as_backoff(backoff),
            retry_on=retry_on,
        )

        def register(f: Callable[..., Any]) -> Task:
            task = Task(
                name=name if name is not None else default_task_name(f),
                fn=f,
                retry=policy,
                timeout=timeout,
                bind=bind,
            )
            return self.registry.register(task)

        return register if fn is None else register(fn)

    def configure_downstream(
        self,
        *,
        service_breaker: BreakerSettings | None = None,
        instance_breaker: BreakerSettings | None = None,
        retry: CallRetryPolicy | None = None,
        shared_breakers: bool = True,
        registry_prefix: str = "ringleader:registry",
    ) -> None:
        """Settings of `app.downstream` (call before its first use); the defaults are
        `registry.BreakerSettings()`, `registry.downstream.DEFAULT_CALL_RETRY` and breakers
        shared in Redis."""
        from ringleader.registry.downstream import connect_downstream

        def build() -> Downstream:
            return connect_downstream(
                self.settings.redis,
                prefix=registry_prefix,
                service_breaker=service_breaker,
                instance_breaker=instance_breaker,
                retry=retry,
                shared_breakers=shared_breakers,
            )

        with self._downstream_lock:
            if self._downstream is not None:
                raise RuntimeError("configure_downstream() after app.downstream was first used")
            self._downstream_factory = build

    @property
    def downstream_if_used(self) -> Downstream | None:
        """`downstream` if a task has used it in this process, else None (never builds it)."""
        return self._downstream

    @property
    def downstream(self) -> Downstream:
        """Call registered services from a task: `app.downstream.call("billing", fn)` runs
        `fn(instance)` on an UP instance, round robin, behind the service's and the
        instance's breakers, retried on retriable errors. While the breaker is open it
        raises ServiceUnavailable, and the worker parks the task (no retry spent) until the
        breaker lets a trial call through. Built on first use, one per process."""
        with self._downstream_lock:
            if self._downstream is None:
                if self._downstream_factory is None:
                    from ringleader.registry.downstream import connect_downstream

                    self._downstream = connect_downstream(self.settings.redis)
                else:
                    self._downstream = self._downstream_factory()
            return self._downstream

    def close(self) -> None:
        """Release what the app built on use (the downstream registry copy's sync thread)."""
        with self._downstream_lock:
            if self._downstream is not None:
                self._downstream.close()
                self._downstream = None

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"App(namespace={s.namespace!r}, bootstrap={s.bootstrap!r}, tasks={len(self.registry)})"
        )
