"""The compose backend: the same scenarios against a docker-compose project (compose/).

A thin shell over the docker CLI. The runner runs in the project's `chaos` service (or on a
host that can resolve the project's container names); it finds the brokers and Redis by
their compose labels, starts its own ledger-app workers as containers of the project's image
on the project's network, and injects faults the docker way: `docker kill -s KILL|TERM`,
`docker pause`/`unpause` (the cgroup freezer, as SIGSTOP), `docker network disconnect`/
`connect` (which cuts the worker off from everything, Redis included), and `docker kill` /
`docker start` of a broker or Redis container, which keeps its data.

Configured from the environment: RINGLEADER_CHAOS_COMPOSE_PROJECT (default "ringleader"),
RINGLEADER_CHAOS_IMAGE ("ringleader:local"), RINGLEADER_BOOTSTRAP and RINGLEADER_REDIS as the
workers reach them, RINGLEADER_CHAOS_LEDGER ("redis://ledger:6379/0").
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping

from ringleader.chaos.backends.base import BackendError
from ringleader.chaos.runner import wait_for
from ringleader.local.services import redis_pings
from ringleader.worker.run import worker_env
from ringleader.worker.settings import AppSettings

__all__ = ["ComposeBackend"]

APP_REF = "ringleader.chaos.app:app"
SESSION_MS = 6000
LABEL = "ringleader.chaos.worker"


class ComposeBackend:
    name = "compose"
    broker = "kafka"
    bind_host = "0.0.0.0"

    def __init__(
        self, project: str, image: str, bootstrap: str, redis_url: str, ledger_url: str
    ) -> None:
        if shutil.which("docker") is None:
            raise BackendError("the compose backend needs the docker CLI on PATH")
        self.project = project
        self.image = image
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self._ledger_url = ledger_url
        self.session_ms = SESSION_MS
        self._workers: dict[str, str] = {}  # worker id -> container id
        self._paused: set[str] = set()
        self.network = self._network()

    @classmethod
    def from_env(cls) -> ComposeBackend:
        env = os.environ
        return cls(
            project=env.get("RINGLEADER_CHAOS_COMPOSE_PROJECT", "ringleader"),
            image=env.get("RINGLEADER_CHAOS_IMAGE", "ringleader:local"),
            bootstrap=env.get("RINGLEADER_BOOTSTRAP", "kafka-1:19092,kafka-2:19092,kafka-3:19092"),
            redis_url=env.get("RINGLEADER_REDIS", "redis://redis:6379/0"),
            ledger_url=env.get("RINGLEADER_CHAOS_LEDGER", "redis://ledger:6379/0"),
        )

    # ---- docker ------------------------------------------------------------------------

    def _docker(self, *args: str, timeout: float = 120.0) -> str:
        try:
            proc = subprocess.run(
                ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise BackendError(f"docker {args[0]} did not finish within {timeout:.0f}s") from e
        if proc.returncode != 0:
            raise BackendError(f"docker {' '.join(args[:2])}: {proc.stderr.strip()}")
        return proc.stdout

    def _service(self, service: str) -> str:
        """The container id of one compose service of the project."""
        out = self._docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        )  # fmt: skip
        ids = out.split()
        if not ids:
            raise BackendError(f"no container of service {service!r} in project {self.project!r}")
        return ids[0]

    def _network(self) -> str:
        raw = self._docker("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                           self._service("redis"))  # fmt: skip
        names: list[str] = sorted(json.loads(raw))
        if not names:
            raise BackendError("the project's redis container is on no network")
        return next((n for n in names if n.startswith(self.project)), names[0])

    def _state(self, container: str) -> dict[str, object]:
        state: dict[str, object] = json.loads(
            self._docker("inspect", "-f", "{{json .State}}", container)
        )
        return state

    # ---- services ----------------------------------------------------------------------

    def use(self, nodes: int) -> None:
        if nodes > 3:
            raise BackendError(f"the compose project has 3 Kafka nodes, not {nodes}")
        for svc in ("kafka-1", "kafka-2", "kafka-3", "redis", "ledger"):
            if not self._state(self._service(svc)).get("Running"):
                raise BackendError(f"{svc} is not running: `docker compose up -d` first")

    def settings(self, namespace: str, partitions: int) -> AppSettings:
        return AppSettings(
            namespace=namespace, bootstrap=self.bootstrap, redis=self.redis_url,
            partitions=partitions,
        )  # fmt: skip

    @property
    def ledger_url(self) -> str:
        return self._ledger_url

    def kill_broker(self, node_id: int) -> None:
        self._kill(self._service(f"kafka-{node_id}"))

    def start_broker(self, node_id: int) -> None:
        self._docker("start", self._service(f"kafka-{node_id}"))
        wait_for(lambda: _brokers(self.bootstrap) >= 3, 120, f"kafka-{node_id} to serve again")

    def kill_redis(self) -> None:
        self._kill(self._service("redis"))

    def start_redis(self) -> None:
        self._docker("start", self._service("redis"))
        wait_for(lambda: redis_pings(self.redis_url), 60, "redis to answer again")

    def reach(self, port: int) -> str:
        return f"{socket.gethostbyname(socket.gethostname())}:{port}"

    def _kill(self, container: str) -> None:
        self._docker("kill", "-s", "KILL", container)
        wait_for(lambda: not self._state(container).get("Running"), 30, f"{container} to die")

    # ---- workers -----------------------------------------------------------------------

    def start_worker(
        self,
        worker_id: str,
        settings: AppSettings,
        *,
        cuttable: bool = False,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        env = worker_env(settings, session_ms=self.session_ms, base={})
        env["RINGLEADER_CHAOS_LEDGER"] = self._ledger_url
        env.update(extra_env or {})
        name = f"{self.project}-chaos-{settings.namespace}-{worker_id}"
        argv = ["run", "-d", "--name", name, "--network", self.network, "--label", LABEL,
                "--entrypoint", "python"]  # fmt: skip
        for k, v in sorted(env.items()):
            argv += ["-e", f"{k}={v}"]
        argv += [self.image, "-m", "ringleader.worker.run", APP_REF, "--id", worker_id,
                 "--concurrency", "4", "--log-level", "INFO"]  # fmt: skip
        self._workers[worker_id] = self._docker(*argv).strip()

    def _container(self, worker_id: str) -> str:
        try:
            return self._workers[worker_id]
        except KeyError:
            raise BackendError(f"no worker {worker_id!r} was started here") from None

    def alive(self, worker_id: str) -> bool:
        return bool(self._state(self._container(worker_id)).get("Running"))

    def exit_code(self, worker_id: str) -> int | None:
        st = self._state(self._container(worker_id))
        code = st.get("ExitCode")
        return None if st.get("Running") or not isinstance(code, int) else code

    def signal(self, worker_id: str, sig: signal.Signals) -> None:
        c = self._container(worker_id)
        if sig is signal.SIGSTOP:
            self._docker("pause", c)
            self._paused.add(worker_id)
        elif sig is signal.SIGCONT:
            self._docker("unpause", c)
            self._paused.discard(worker_id)
        elif sig is signal.SIGKILL:
            self._kill(c)
        else:
            self._docker("kill", "-s", sig.name.removeprefix("SIG"), c)

    def log(self, worker_id: str) -> str:
        proc = subprocess.run(
            ["docker", "logs", self._container(worker_id)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return proc.stdout + proc.stderr

    def cut(self, worker_id: str) -> None:
        self._docker("network", "disconnect", self.network, self._container(worker_id))

    def heal(self, worker_id: str) -> None:
        self._docker("network", "connect", self.network, self._container(worker_id))

    def stop_workers(self) -> None:
        for wid in list(self._paused):
            self.signal(wid, signal.SIGCONT)
        ids = list(self._workers.values())
        if ids:
            subprocess.run(["docker", "stop", "-t", "60", *ids], capture_output=True,
                           timeout=180, check=False)  # fmt: skip
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60,
                           check=False)  # fmt: skip
        self._workers.clear()

    def close(self) -> None:
        self.stop_workers()


def _brokers(bootstrap: str) -> int:
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=3)
    except Exception:  # noqa: BLE001 - not serving yet
        return 0
    return len(md.brokers)
