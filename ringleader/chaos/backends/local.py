"""The local backend: brokers and Redis from `ringleader local`, workers as child processes.

Every Kafka node gets one more listener, CHAOS, that it advertises at a loopback TCP proxy
the runner owns (`ringleader.chaos.proxy`): a `cuttable` worker bootstraps through the
proxies, so every connection it makes to any broker passes them, and `cut` resets those
connections and refuses new ones until `heal`. Nothing leaves 127.0.0.1.

The workers' Redis fsyncs every write (`redis_persist`), so a SIGKILL and restart keeps what
it acknowledged; the bookkeeping Redis is a separate server that no scenario touches.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ringleader.chaos.backends.base import BackendError
from ringleader.chaos.proxy import TcpProxy
from ringleader.local import servers, services
from ringleader.local.kafka import KafkaNode
from ringleader.local.procs import (
    ServiceStartError,
    alive,
    free_port,
    stop,
    terminate_all,
    wait_ready,
)
from ringleader.local.stackfile import Stack
from ringleader.worker.run import worker_env
from ringleader.worker.settings import AppSettings

__all__ = ["LocalBackend"]

APP_REF = "ringleader.chaos.app:app"
SESSION_MS = 6000


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    cuttable: bool


class LocalBackend:
    name = "local"
    bind_host = "127.0.0.1"

    def __init__(
        self,
        root: Path,
        *,
        broker: str = "kafka",
        concurrency: int = 4,
        session_ms: int = SESSION_MS,
    ) -> None:
        if broker not in ("kafka", "tansu"):
            raise BackendError(f"broker must be kafka or tansu, not {broker!r}")
        self.broker = broker
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.concurrency = concurrency
        self.session_ms = session_ms
        self._stack: Stack | None = None
        self._proxies: dict[int, TcpProxy] = {}  # node id -> proxy to its CHAOS listener
        self._lock = threading.Lock()
        self._workers: dict[str, _Worker] = {}
        self._ledger_pid, port = servers.start_redis(self.root / "ledger", False)
        self._ledger_url = f"redis://127.0.0.1:{port}/0"
        try:
            wait_ready("ledger redis", self._ledger_pid, self.root / "ledger" / "redis.log",
                       lambda: services.redis_pings(self._ledger_url), 30)  # fmt: skip
        except ServiceStartError as e:
            stop(self._ledger_pid)
            raise BackendError(f"the bookkeeping Redis did not start: {e}") from e

    # ---- services ----------------------------------------------------------------------

    def use(self, nodes: int) -> None:
        if self.broker == "tansu":
            if nodes > 1:
                raise BackendError("Tansu runs as one broker here")
            if self._stack is None:
                self._up(self.root / "tansu", tansu=True)
            return
        if self._stack is not None and len(self._stack.nodes) == nodes:
            return
        self._down()
        self._up(self.root / f"kafka-{nodes}", kafka_nodes=nodes,
                 kafka_overrides=self._chaos_listener)  # fmt: skip

    def _up(
        self,
        d: Path,
        *,
        kafka_nodes: int = 0,
        tansu: bool = False,
        kafka_overrides: Callable[[KafkaNode], Mapping[str, str]] | None = None,
    ) -> None:
        try:
            self._stack = services.up(
                d, kafka_nodes=kafka_nodes, tansu=tansu, redis=True, redis_persist=True,
                kafka_overrides=kafka_overrides,
            )  # fmt: skip
        except ServiceStartError as e:
            self._close_proxies()
            raise BackendError(f"the local stack did not start: {e}") from e

    def _chaos_listener(self, node: KafkaNode) -> dict[str, str]:
        port = free_port()
        proxy = TcpProxy(("127.0.0.1", port))
        with self._lock:
            self._proxies[node.node_id] = proxy
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port},CHAOS://127.0.0.1:{port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
            f"CHAOS://127.0.0.1:{proxy.port}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "CHAOS:PLAINTEXT",
        }

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise BackendError("no stack: call use(nodes) first")
        return self._stack

    def settings(self, namespace: str, partitions: int) -> AppSettings:
        s = self.stack
        assert s.bootstrap is not None and s.redis is not None
        return AppSettings(
            namespace=namespace, bootstrap=s.bootstrap, redis=s.redis, partitions=partitions
        )

    @property
    def ledger_url(self) -> str:
        return self._ledger_url

    def kill_broker(self, node_id: int) -> None:
        if self.broker == "tansu":
            raise BackendError("Tansu keeps its log in memory here: a restart would lose it")
        services.stop_service(self.stack, f"kafka-{node_id}")

    def start_broker(self, node_id: int) -> None:
        services.restart_kafka_node(self.stack, node_id)

    def kill_redis(self) -> None:
        services.stop_service(self.stack, "redis")

    def start_redis(self) -> None:
        services.restart_redis(self.stack)

    def reach(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    # ---- workers -----------------------------------------------------------------------

    def start_worker(
        self,
        worker_id: str,
        settings: AppSettings,
        *,
        cuttable: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        if cuttable:
            proxied = ",".join(f"127.0.0.1:{p.port}" for _, p in sorted(self._proxies.items()))
            settings = dataclasses.replace(settings, bootstrap=proxied)
        env = worker_env(settings, session_ms=self.session_ms)
        env["RINGLEADER_CHAOS_LEDGER"] = self._ledger_url
        env.update(extra_env or {})
        logs = self.root / "logs" / settings.namespace
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{worker_id}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ringleader.worker.run", APP_REF, "--id", worker_id,
                 "--concurrency", str(self.concurrency), "--log-level", "INFO"],
                env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=logs,
            )  # fmt: skip
        self._workers[worker_id] = _Worker(proc, log, cuttable)

    def _worker(self, worker_id: str) -> _Worker:
        try:
            return self._workers[worker_id]
        except KeyError:
            raise BackendError(f"no worker {worker_id!r} was started here") from None

    def alive(self, worker_id: str) -> bool:
        return self._worker(worker_id).proc.poll() is None

    def exit_code(self, worker_id: str) -> int | None:
        return self._worker(worker_id).proc.poll()

    def signal(self, worker_id: str, sig: signal.Signals) -> None:
        w = self._worker(worker_id)
        if w.proc.poll() is None:
            w.proc.send_signal(sig)
            if sig is signal.SIGKILL:
                w.proc.wait(30)

    def log(self, worker_id: str) -> str:
        try:
            return self._worker(worker_id).log.read_text(errors="replace")
        except OSError:
            return ""

    def cut(self, worker_id: str) -> None:
        if not self._proxies:
            raise BackendError("no proxied listener to cut (Tansu advertises one address)")
        if not self._worker(worker_id).cuttable:
            raise BackendError(f"{worker_id} was not started cuttable")
        for p in self._proxies.values():
            p.cut()

    def heal(self, worker_id: str) -> None:
        for p in self._proxies.values():
            p.restore()

    def stop_workers(self) -> None:
        running = [w.proc for w in self._workers.values() if w.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGCONT)  # a paused one cannot act on SIGTERM
        terminate_all(running, 60)
        self._workers.clear()
        for p in self._proxies.values():
            p.restore()

    # ---- teardown ----------------------------------------------------------------------

    def _down(self) -> None:
        if self._stack is not None:
            services.down(Path(self._stack.dir))
            self._stack = None
        self._close_proxies()

    def _close_proxies(self) -> None:
        for p in self._proxies.values():
            p.close()
        self._proxies.clear()

    def close(self) -> None:
        self.stop_workers()
        self._down()
        if alive(self._ledger_pid):
            stop(self._ledger_pid)
