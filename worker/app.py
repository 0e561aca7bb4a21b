"""The App: settings plus the task registry. Workers and clients are built from it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, overload

from worker.retry import Backoff, RetryPolicy, as_backoff
from worker.routing import Topics, topics
from worker.settings import AppSettings, KafkaSecurity
from worker.tasks import Task, TaskRegistry, default_task_name


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

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"App(namespace={s.namespace!r}, bootstrap={s.bootstrap!r}, tasks={len(self.registry)})"
        )
