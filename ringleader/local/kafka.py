"""Apache Kafka in KRaft mode from Maven Central jars: fetch once, format, start.

Each node is a combined broker+controller. A cluster uses a static controller quorum
(`controller.quorum.voters`), so every node can be formatted independently and in parallel.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ringleader.local.procs import ServiceStartError, free_port, spawn
from ringleader.local.progress import Say, silent

KAFKA_VERSION = "4.1.1"
HEAP = "-Xmx768m"


def cache_dir() -> Path:
    root = os.environ.get("RINGLEADER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ringleader"
    )
    return Path(root) / f"kafka-{KAFKA_VERSION}"


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceStartError("java is not on PATH: Apache Kafka needs Java 17 or newer")
    return java


def fetch_jars(say: Say = silent) -> Path:
    """Resolve Kafka's runtime jars into the cache once; return the libs directory."""
    libs = cache_dir() / "libs"
    marker = cache_dir() / "complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceStartError("mvn is not on PATH: it fetches Apache Kafka's jars")
    say(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {cache_dir()} "
        "(once; this can take minutes)")  # fmt: skip
    cache_dir().mkdir(parents=True, exist_ok=True)
    pom = cache_dir() / "pom.xml"
    template = resources.files("ringleader.local").joinpath("kafka_pom.xml").read_text()
    pom.write_text(template.replace("@KAFKA_VERSION@", KAFKA_VERSION))
    tmp = cache_dir() / "libs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr)[-3000:]
        raise ServiceStartError(f"fetching Kafka {KAFKA_VERSION} jars failed:\n{out}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.write_text(KAFKA_VERSION)
    return libs


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    dir: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.dir / "kafka.log"


def plan_nodes(base: Path, count: int) -> list[KafkaNode]:
    return [
        KafkaNode(node_id=i, port=free_port(), controller_port=free_port(), dir=base / f"kafka-{i}")
        for i in range(1, count + 1)
    ]


def _properties(
    node: KafkaNode, nodes: list[KafkaNode], overrides: Mapping[str, str] | None = None
) -> str:
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    rf = min(3, len(nodes))
    isr = 2 if len(nodes) >= 3 else 1
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(node.dir / "data"),
        "num.partitions": "1",
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(isr),
        "offsets.topic.replication.factor": str(rf),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(isr),
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(isr),
        # Tests and local use want fast rebalances and short sessions.
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "log.flush.interval.messages": "9223372036854775807",
        "auto.create.topics.enable": "true",
    }
    props.update(overrides or {})  # a secured node's listeners (kafka_secure.properties)
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _classpath(libs: Path) -> str:
    return f"{libs}/*"


def format_storage(
    node: KafkaNode,
    nodes: list[KafkaNode],
    cluster_id: str,
    libs: Path,
    *,
    overrides: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> None:
    """Fresh storage: each `up` starts an empty cluster, like its Redis (no persistence).
    A data dir left by an earlier `up` in the same DIR carries that cluster's id, which the
    format tool refuses to overwrite. `overrides` replace server properties, `extra_args`
    go to the format tool (a secured node's listeners and SCRAM users)."""
    shutil.rmtree(node.dir / "data", ignore_errors=True)
    node.dir.mkdir(parents=True, exist_ok=True)
    props = node.dir / "server.properties"
    if overrides:
        # It then holds JAAS passwords: readable by us only, from before anything is written.
        props.touch(mode=0o600)
        props.chmod(0o600)
    props.write_text(_properties(node, nodes, overrides))
    proc = subprocess.run(
        [_java(), HEAP, "-cp", _classpath(libs), "kafka.tools.StorageTool", "format",
         f"--cluster-id={cluster_id}", "-c", str(props), *extra_args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ServiceStartError(
            f"formatting Kafka node {node.node_id} failed:\n{proc.stdout}{proc.stderr}"
        )


def format_cluster(
    nodes: list[KafkaNode],
    libs: Path,
    overrides: Callable[[KafkaNode], Mapping[str, str]] | None = None,
    extra_args: Sequence[str] = (),
) -> str:
    """Format every node's storage in parallel with one cluster id; return the id."""
    # Kafka cluster ids are 16 random bytes in unpadded url-safe base64; one may start with
    # "-", so the tool gets it as --cluster-id=ID (a separate "-..." would read as a flag).
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        list(
            pool.map(
                lambda n: format_storage(
                    n,
                    nodes,
                    cluster_id,
                    libs,
                    overrides=overrides(n) if overrides else None,
                    extra_args=extra_args,
                ),
                nodes,
            )
        )
    return cluster_id


def start_node(node: KafkaNode, libs: Path) -> int:
    log4j = resources.files("ringleader.local").joinpath("log4j2.yaml")
    argv = [
        _java(), HEAP, "-Xms128m", "-XX:+UseG1GC",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
        f"-Dringleader.node.dir={node.dir}",
        "-cp", _classpath(libs), "kafka.Kafka", str(node.dir / "server.properties"),
    ]  # fmt: skip
    return spawn(argv, node.log, cwd=node.dir)
