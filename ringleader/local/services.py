"""Bring a local stack up into a directory, report it, and take exactly that stack down.

The directory's `stack.json` records every process started (pid, port, log), so `down`
stops what that directory started and nothing else, even from another shell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ringleader.local import kafka, servers
from ringleader.local import secure as secured
from ringleader.local.procs import (
    ServiceStartError,
    alive,
    cmdline,
    port_open,
    stop,
    wait_ready,
)
from ringleader.local.progress import Say, silent
from ringleader.local.stackfile import STATE, Service, Stack, load

__all__ = ["Service", "ServiceStartError", "Stack", "down", "load", "status", "up"]

log = logging.getLogger("ringleader.local")


def up(
    d: Path,
    *,
    kafka_nodes: int = 0,
    tansu: bool = False,
    redis: bool = False,
    valkey: bool = False,
    secure: bool = False,
    timeout: float = 90.0,
    kafka_overrides: Callable[[kafka.KafkaNode], Mapping[str, str]] | None = None,
    redis_persist: bool = False,
    say: Say = silent,
) -> Stack:
    """Start the asked services; on any failure stop what this call started and raise.

    `secure`: Kafka with TLS and SASL listeners, Redis with TLS and ACL users (see
    `ringleader.local.secure`); Tansu and Valkey have no secured variant here.
    `kafka_overrides`: server properties per node (the chaos suite's extra listener);
    `redis_persist`: Redis fsyncs every write (see `servers.start_redis`);
    `say`: hears what is being started and waited for, as it happens (`progress`)."""
    _check_choice(kafka_nodes, tansu, redis, valkey, secure, kafka_overrides is not None)
    d = d.resolve()
    d.mkdir(parents=True, exist_ok=True)
    existing = load(d)
    if existing is not None and any(alive(s.pid) for s in existing.services):
        raise ServiceStartError(f"{d} already runs a stack; run `ringleader local down --dir {d}`")
    (d / secured.SECRETS).unlink(missing_ok=True)  # an earlier stack's, stopped
    stack = Stack(dir=str(d), secure=secure, redis_persist=redis_persist)
    sec = _prepare_secure(stack, d, say) if secure else None
    try:
        if kafka_nodes:
            _up_kafka(stack, d, kafka_nodes, timeout, sec=sec, overrides=kafka_overrides, say=say)
        if tansu:
            _up_tansu(stack, d, timeout, say)
        if redis or valkey:
            _up_redis(stack, d, valkey, timeout, sec=sec, persist=redis_persist, say=say)
    except ServiceStartError as e:
        _stop_all(stack)
        if sec is None:
            raise
        raise ServiceStartError(sec.hide(str(e))) from None  # the original holds passwords
    except BaseException:
        _stop_all(stack)
        raise
    stack.save()
    return stack


def _prepare_secure(stack: Stack, d: Path, say: Say) -> secured.Setup:
    t0 = time.monotonic()
    say(f"making certificates and passwords in {d / 'tls'}")
    sec = secured.prepare(d)
    stack.started_in["tls_s"] = round(time.monotonic() - t0, 2)
    return sec


def _check_choice(  # noqa: PLR0917 - the flags of `up`, passed on as they are
    kafka_nodes: int, tansu: bool, redis: bool, valkey: bool, secure: bool, overrides: bool
) -> None:
    if kafka_nodes and tansu:
        raise ValueError("choose one broker: Apache Kafka or Tansu")
    if redis and valkey:
        raise ValueError("choose one of Redis and Valkey")
    if secure and (tansu or valkey):
        raise ValueError("--secure starts Apache Kafka and Redis only, not Tansu or Valkey")
    if secure and overrides:
        raise ValueError("a secured Kafka's listeners are its own: no kafka_overrides")


def _up_kafka(
    stack: Stack,
    d: Path,
    count: int,
    timeout: float,
    *,
    sec: secured.Setup | None = None,
    overrides: Callable[[kafka.KafkaNode], Mapping[str, str]] | None = None,
    say: Say = silent,
) -> None:
    t0 = time.monotonic()
    libs = kafka.fetch_jars(say)
    stack.started_in["kafka_fetch_s"] = round(time.monotonic() - t0, 2)
    t0 = time.monotonic()
    nodes = kafka.plan_nodes(d, count)
    say(f"formatting KRaft storage for {_numbered('node', [n.node_id for n in nodes])}")
    if sec is None:
        kafka.format_cluster(nodes, libs, overrides)
    else:
        sec.plan_kafka(nodes)
        kafka.format_cluster(nodes, libs, sec.kafka_overrides, sec.kafka_format_args())
    for node in nodes:
        pid = kafka.start_node(node, libs)
        stack.services.append(
            Service(f"kafka-{node.node_id}", "kafka", pid, node.port, str(node.log), node.node_id)
        )
        stack.save()  # record each pid at once so a failed start can still be stopped
        say(f"starting Apache Kafka {kafka.KAFKA_VERSION} node {node.node_id} on {node.address} "
            f"(pid {pid})")  # fmt: skip
    bootstrap = ",".join(n.address for n in nodes)
    # Secured, "ready" is the SASL_SSL listener answering metadata as user ringleader.
    config = {} if sec is None else secured.librdkafka(sec.kafka_main(bootstrap))
    for svc, node in zip(stack.nodes, nodes, strict=True):
        what = f"Kafka node {node.node_id} to listen on {node.address}"
        wait_ready(svc.name, svc.pid, node.log, _listening(node.port), timeout, say=say, what=what)
    wait_ready(
        "kafka cluster",
        stack.nodes[0].pid,
        nodes[0].log,
        lambda: _brokers_registered(bootstrap, count, config),
        timeout,
        say=say,
        what=_answering(bootstrap, count, secure=sec is not None),
    )
    stack.bootstrap = bootstrap
    stack.started_in["kafka_s"] = round(time.monotonic() - t0, 2)
    say(f"Kafka{'' if count == 1 else f' cluster of {count} nodes'} ready in "
        f"{time.monotonic() - t0:.1f}s")  # fmt: skip
    if sec is not None:
        sec.record(kafka=sec.kafka_main(bootstrap), listeners=sec.kafka_listeners(nodes))


def _numbered(noun: str, ids: list[int]) -> str:
    """E.g. `node 1`, `nodes 1, 2, 3`."""
    return f"{noun}{'' if len(ids) == 1 else 's'} {', '.join(map(str, ids))}"


def _answering(bootstrap: str, count: int, *, secure: bool) -> str:
    """What the cluster wait waits for, in words."""
    who = " as user ringleader over SASL_SSL" if secure else ""
    if count == 1:
        return f"Kafka to answer metadata on {bootstrap}{who}"
    return f"the {count} Kafka nodes to register as brokers{who}"


def _listening(port: int) -> Callable[[], bool]:
    return lambda: port_open("127.0.0.1", port)


def _brokers_registered(bootstrap: str, count: int, config: dict[str, str] | None = None) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**(config or {}), "bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return len(admin.list_topics(timeout=2).brokers) >= count
    except Exception:  # noqa: BLE001 - any failure here only means "not ready yet"
        return False


def _up_tansu(stack: Stack, d: Path, timeout: float, say: Say = silent) -> None:
    t0 = time.monotonic()
    sub = d / "tansu"
    pid, port = servers.start_tansu(sub)
    stack.services.append(Service("tansu", "tansu", pid, port, str(sub / "tansu.log")))
    stack.save()
    address = f"127.0.0.1:{port}"
    say(f"starting Tansu on {address} (pid {pid})")
    logf = sub / "tansu.log"
    wait_ready("tansu", pid, logf, _listening(port), timeout, say=say,
               what=f"Tansu to listen on {address}")  # fmt: skip
    wait_ready("tansu", pid, logf, lambda: _brokers_registered(address, 1), timeout, say=say,
               what=f"Tansu to answer metadata on {address}")  # fmt: skip
    stack.bootstrap = address
    stack.started_in["tansu_s"] = round(time.monotonic() - t0, 2)
    say(f"Tansu ready in {time.monotonic() - t0:.1f}s")


def _up_redis(
    stack: Stack,
    d: Path,
    valkey: bool,
    timeout: float,
    *,
    sec: secured.Setup | None = None,
    persist: bool = False,
    say: Say = silent,
) -> None:
    t0 = time.monotonic()
    kind = "valkey" if valkey else "redis"
    title = kind.capitalize()
    sub = d / kind
    if sec is None:
        pid, port = servers.start_redis(sub, valkey, persist=persist)
    else:
        t = sec.tls
        pid, port = servers.start_redis_tls(
            sub, cert=t.server_cert, key=t.server_key, ca=t.ca, users=sec.redis_users()
        )
    logf = sub / f"{kind}.log"
    stack.services.append(Service(kind, kind, pid, port, str(logf)))
    stack.save()
    address = f"127.0.0.1:{port}"
    say(f"starting {title}{'' if sec is None else ' with TLS and ACL users'} on {address} "
        f"(pid {pid})")  # fmt: skip
    if sec is None:
        url, what = f"redis://{address}", f"{title} to answer PING on {address}"
    else:
        # Ready when the ringleader user can log in over TLS (ACL loaded, certificate good).
        url, what = sec.redis_url(port), f"{title} to accept user ringleader over TLS on {address}"
    wait_ready(kind, pid, logf, lambda: redis_pings(url), timeout, say=say, what=what)
    if sec is None:
        stack.redis = f"{url}/0"
    else:
        stack.redis = sec.redis_url(port, password="***")
        sec.record(redis=url, redis_admin=sec.redis_url(port, admin=True))
    stack.started_in[f"{kind}_s"] = round(time.monotonic() - t0, 2)
    say(f"{title} ready in {time.monotonic() - t0:.1f}s")


def redis_pings(url: str) -> bool:
    """Whether the Redis at `url` answers PING now (a LOADING one does not yet)."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _ours(svc: Service, d: str) -> bool:
    """Guard against a recycled pid: the process must still be the one we started."""
    line = cmdline(svc.pid)
    if not line:
        return False
    return d in line or str(svc.port) in line


def _stop_all(stack: Stack) -> None:
    for svc in reversed(stack.services):
        if alive(svc.pid) and _ours(svc, stack.dir):
            stop(svc.pid)


def down(d: Path) -> list[str]:
    """Stop every process `d`'s stack started; return the names stopped."""
    stack = load(d.resolve())
    if stack is None:
        return []
    stopped = [s.name for s in stack.services if alive(s.pid)]
    _stop_all(stack)
    (Path(stack.dir) / STATE).unlink(missing_ok=True)
    (Path(stack.dir) / secured.SECRETS).unlink(missing_ok=True)  # no use once stopped
    return stopped


def status(d: Path) -> dict[str, object]:
    stack = load(d.resolve())
    if stack is None:
        return {"dir": str(d.resolve()), "running": False, "services": []}
    return {
        "dir": stack.dir,
        "running": all(alive(s.pid) for s in stack.services),
        "bootstrap": stack.bootstrap,
        "redis": stack.redis,
        "services": [
            {"name": s.name, "pid": s.pid, "address": s.address, "alive": alive(s.pid)}
            for s in stack.services
        ],
    }


def stop_service(stack: Stack, name: str, *, kill: bool = True) -> None:
    """Stop one process of a running stack (chaos tests): SIGKILL by default."""
    import os
    import signal

    svc = next(s for s in stack.services if s.name == name)
    if kill:
        os.kill(svc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(svc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        stop(svc.pid)


def restart_kafka_node(stack: Stack, node_id: int, timeout: float = 60.0) -> Service:
    """Start a stopped node of the stack again with its storage (chaos tests heal with it)."""
    svc = next(s for s in stack.nodes if s.node_id == node_id)
    if alive(svc.pid):
        raise ServiceStartError(f"{svc.name} is still running (pid {svc.pid})")
    node = next(n for n in _planned(stack) if n.node_id == node_id)
    svc.pid = kafka.start_node(node, kafka.fetch_jars())
    stack.save()
    wait_ready(svc.name, svc.pid, node.log, _listening(node.port), timeout)
    config = secured.admin_config(Path(stack.dir)) if stack.secure else {}
    wait_ready(
        svc.name,
        svc.pid,
        node.log,
        lambda: _brokers_registered(stack.bootstrap or "", len(stack.nodes), config),
        timeout,
    )
    return svc


def restart_redis(stack: Stack, timeout: float = 30.0) -> Service:
    """Start a stopped Redis of the stack again on its port and directory (chaos tests)."""
    svc = next(s for s in stack.services if s.kind in ("redis", "valkey"))
    if alive(svc.pid):
        raise ServiceStartError(f"{svc.name} is still running (pid {svc.pid})")
    if stack.secure:
        raise ServiceStartError("restarting a secured Redis is not supported")
    sub = Path(stack.dir) / svc.kind
    svc.pid, _ = servers.start_redis(
        sub, svc.kind == "valkey", svc.port, persist=stack.redis_persist
    )
    stack.save()
    url = f"redis://127.0.0.1:{svc.port}"
    wait_ready(svc.name, svc.pid, Path(svc.log), lambda: redis_pings(url), timeout)
    return svc


def _planned(stack: Stack) -> list[kafka.KafkaNode]:
    return [
        kafka.KafkaNode(
            node_id=s.node_id or 0,
            port=s.port,
            controller_port=0,  # only read from server.properties, which already exists
            dir=Path(stack.dir) / f"kafka-{s.node_id}",
        )
        for s in stack.nodes
    ]
