"""What a scenario needs from the place its processes run."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Protocol

from ringleader.worker.settings import AppSettings

__all__ = ["Backend", "BackendError"]


class BackendError(Exception):
    """The backend could not do what a scenario asked (start a worker, kill a broker)."""


class Backend(Protocol):
    name: str
    bind_host: str  # where the runner listens for the workers (its downstream stub)
    broker: str  # "kafka" or "tansu"
    session_ms: int  # the workers' group session timeout

    def use(self, nodes: int) -> None:
        """Have a Kafka cluster of `nodes` nodes (and the workers' Redis) up for the next
        scenario; `nodes` the backend cannot give (compose has 3) may be given as more."""

    def settings(self, namespace: str, partitions: int) -> AppSettings:
        """The app's settings as the runner reaches the services."""

    @property
    def ledger_url(self) -> str:
        """The bookkeeping Redis as the runner reaches it."""

    def start_worker(
        self,
        worker_id: str,
        settings: AppSettings,
        *,
        cuttable: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """Start a ledger-app worker; `cuttable`: one `cut` can later separate from the
        brokers (the local backend routes it through its proxies)."""

    def alive(self, worker_id: str) -> bool: ...

    def exit_code(self, worker_id: str) -> int | None: ...

    def signal(self, worker_id: str, sig: signal.Signals) -> None: ...

    def log(self, worker_id: str) -> str: ...

    def cut(self, worker_id: str) -> None:
        """Separate the worker from every broker (its Redis stays reachable)."""

    def heal(self, worker_id: str) -> None: ...

    def kill_broker(self, node_id: int) -> None:
        """SIGKILL one Kafka node."""

    def start_broker(self, node_id: int) -> None:
        """Start a killed node again on the same data; return once it serves."""

    def kill_redis(self) -> None:
        """SIGKILL the workers' Redis."""

    def start_redis(self) -> None:
        """Start it again on the same data and address; return once it answers."""

    def reach(self, port: int) -> str:
        """`host:port` at which the workers reach a port the runner listens on."""

    def stop_workers(self) -> None:
        """Stop every worker this backend started (SIGCONT, SIGTERM, then SIGKILL)."""

    def close(self) -> None: ...
