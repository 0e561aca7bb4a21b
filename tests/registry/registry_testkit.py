"""Helpers shared by the registry tests (plain functions; fixtures live in the test files)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from ringleader.registry.backend import RegistryBackend
from ringleader.registry.client import RegistryClient
from ringleader.registry.model import Instance


def server_view(backend: RegistryBackend) -> dict[str, Instance]:
    return {k: Instance.decode(v) for k, v in backend.snapshot().instances.items()}


def assert_same_copy(client: RegistryClient, backend: RegistryBackend) -> None:
    snap = backend.snapshot()
    assert client.as_dict() == {k: Instance.decode(v) for k, v in snap.instances.items()}
    assert client.hashcode == snap.hashcode
    assert client.seq == snap.seq


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OwnRedis:
    """A redis-server process started by a test (so the test may kill and restart it)."""

    port: int
    workdir: Path
    persist: bool
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            str(self.workdir / "redis.log"),
        ]
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        while True:
            try:
                if probe.ping():
                    probe.close()
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def start_own_redis(workdir: Path, persist: bool) -> OwnRedis:
    workdir.mkdir(parents=True, exist_ok=True)
    if not any(
        os.access(os.path.join(p, "redis-server"), os.X_OK)
        for p in os.environ.get("PATH", "").split(os.pathsep)
    ):
        raise RuntimeError("redis-server is not on PATH")
    r = OwnRedis(free_port(), workdir, persist)
    r.start()
    return r
