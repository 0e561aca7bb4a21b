"""The record of a local stack: what a directory started (`<dir>/stack.json`).

It holds pids, ports and logs, never a password (a secured stack's are in secrets.json).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["STATE", "Service", "Stack", "load"]

STATE = "stack.json"


@dataclass
class Service:
    """One process of the stack."""

    name: str
    kind: str  # kafka | tansu | redis | valkey
    pid: int
    port: int
    log: str
    node_id: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Stack:
    dir: str
    bootstrap: str | None = None
    redis: str | None = None
    services: list[Service] = field(default_factory=list)
    started_in: dict[str, float] = field(default_factory=dict)
    # TLS and SASL/ACL users (`local up --secure`); `redis` then shows *** for the password,
    # and what clients need is in secrets.json (`secure.connection(dir)`).
    secure: bool = False
    redis_persist: bool = False  # its Redis fsyncs every write: a restart keeps the data

    @property
    def nodes(self) -> list[Service]:
        """The Kafka nodes (empty for Tansu)."""
        return [s for s in self.services if s.kind == "kafka"]

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    def save(self) -> None:
        Path(self.dir, STATE).write_text(json.dumps(self.to_json(), indent=2))


def load(d: Path) -> Stack | None:
    path = d / STATE
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    services = [Service(**s) for s in raw.pop("services")]
    return Stack(**raw, services=services)
