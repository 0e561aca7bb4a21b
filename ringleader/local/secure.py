"""What `local up --secure` adds: certificates, passwords, and how clients connect.

Passwords are made per stack and kept in `<dir>/secrets.json` (mode 0600), never in
`stack.json` or printed output other than `--json`: `stack.json` and `local status` show
the Redis URL with `***` for its password. `connection(dir)` is what `--json` prints:
the main listener's `KafkaSecurity` fields, every other listener's, the Redis URLs and
the TLS files.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ringleader.local import kafka_secure, redis_acl
from ringleader.local.kafka import KafkaNode
from ringleader.local.kafka_secure import SecurePorts
from ringleader.local.tls import TlsFiles, generate

__all__ = ["SECRETS", "Setup", "admin_config", "connection", "librdkafka", "prepare"]

SECRETS = "secrets.json"
REDIS_ADMIN = "admin"
_ORDER = ("bootstrap", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
          "ssl_cafile", "redis", "redis_admin", "listeners", "tls")  # fmt: skip


def _password() -> str:
    # URL-safe base64: nothing to escape in a URL, a JAAS string or an --add-scram value.
    return secrets.token_urlsafe(18)


@dataclass
class Setup:
    """One secured stack's material while it starts."""

    dir: Path
    tls: TlsFiles
    kafka_password: str = field(default_factory=_password, repr=False)
    kafka_admin_password: str = field(default_factory=_password, repr=False)
    redis_password: str = field(default_factory=_password, repr=False)
    redis_admin_password: str = field(default_factory=_password, repr=False)
    kafka_ports: dict[int, SecurePorts] = field(default_factory=dict)

    def hide(self, text: str) -> str:
        """`text` (a start-up error, a log tail) with every password of this stack as ***."""
        for pw in (self.kafka_password, self.kafka_admin_password, self.redis_password,
                   self.redis_admin_password):  # fmt: skip
            text = text.replace(pw, "***")
        return text

    # ---- Kafka --------------------------------------------------------------------------

    def plan_kafka(self, nodes: list[KafkaNode]) -> None:
        """Each node's other listener ports, picked before the nodes are formatted (in
        parallel threads, which then only read them)."""
        self.kafka_ports = {n.node_id: SecurePorts.plan() for n in nodes}

    def kafka_overrides(self, node: KafkaNode) -> dict[str, str]:
        return kafka_secure.properties(
            port=node.port,
            controller_port=node.controller_port,
            ports=self.kafka_ports[node.node_id],
            tls=self.tls,
            password=self.kafka_password,
            admin_password=self.kafka_admin_password,
        )

    def kafka_format_args(self) -> list[str]:
        return kafka_secure.format_args(self.kafka_password, self.kafka_admin_password)

    def kafka_main(self, bootstrap: str) -> dict[str, str]:
        """The SASL_SSL listener's settings: KafkaSecurity field names, plus `bootstrap`."""
        return {
            "bootstrap": bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": kafka_secure.USER,
            "sasl_password": self.kafka_password,
            "ssl_cafile": str(self.tls.ca),
        }

    def kafka_listeners(self, nodes: list[KafkaNode]) -> dict[str, dict[str, str]]:
        def boot(name: str) -> str:
            return ",".join(f"127.0.0.1:{self.kafka_ports[n.node_id].of(name)}" for n in nodes)

        main = self.kafka_main("")
        return {
            "SSL": {
                "bootstrap": boot("SSL"),
                "security_protocol": "SSL",
                "ssl_cafile": str(self.tls.ca),
                "ssl_certfile": str(self.tls.client_cert),
                "ssl_keyfile": str(self.tls.client_key),
            },
            "SASL_PLAINTEXT": {
                "bootstrap": boot("SASL_PLAINTEXT"),
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": kafka_secure.USER,
                "sasl_password": self.kafka_password,
            },
            "BADHOST": {**main, "bootstrap": boot("BADHOST")},
        }

    # ---- Redis --------------------------------------------------------------------------

    def redis_users(self) -> list[str]:
        return [
            redis_acl.config_line(REDIS_ADMIN, self.redis_admin_password, redis_acl.ADMIN_RULES),
            redis_acl.config_line(
                kafka_secure.USER, self.redis_password, redis_acl.RINGLEADER_RULES
            ),
        ]

    def redis_url(self, port: int, *, admin: bool = False, password: str | None = None) -> str:
        user = REDIS_ADMIN if admin else kafka_secure.USER
        pw = password or (self.redis_admin_password if admin else self.redis_password)
        ca = quote(str(self.tls.ca), safe="/")
        return f"rediss://{user}:{pw}@127.0.0.1:{port}/0?ssl_ca_certs={ca}"

    # ---- the record -----------------------------------------------------------------------

    def record(self, **parts: Any) -> None:
        """Add to secrets.json what clients of the stack need (`connection`); `kafka` is
        the main listener's settings, merged at the top level."""
        conn = connection(self.dir) or {
            "bootstrap": None,
            "redis": None,
            "tls": {
                "ca": str(self.tls.ca),
                "other_ca": str(self.tls.other_ca),
                "client_cert": str(self.tls.client_cert),
                "client_key": str(self.tls.client_key),
            },
        }
        conn.update(parts.pop("kafka", None) or {})
        conn.update(parts)
        first = [k for k in _ORDER if k in conn]  # main settings first, for a reader
        self._save({k: conn[k] for k in [*first, *(k for k in conn if k not in first)]})

    def _save(self, conn: dict[str, Any]) -> None:
        path = self.dir / SECRETS
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an older file of the same name keeps its mode otherwise
        with os.fdopen(fd, "w") as f:
            json.dump(conn, f, indent=2)


def prepare(d: Path) -> Setup:
    """Fresh certificates in `<d>/tls/` and fresh passwords."""
    return Setup(dir=d, tls=generate(d / "tls"))


def connection(d: Path) -> dict[str, Any] | None:
    """What `local up --secure --json` printed for the stack in `d` (None: not secured or
    not running)."""
    path = d.resolve() / SECRETS
    if not path.exists():
        return None
    conn: dict[str, Any] = json.loads(path.read_text())
    return conn


def librdkafka(settings: dict[str, str]) -> dict[str, str]:
    """confluent-kafka configuration from KafkaSecurity-named settings (as printed)."""
    names = {
        "bootstrap": "bootstrap.servers",
        "security_protocol": "security.protocol",
        "sasl_mechanism": "sasl.mechanism",
        "sasl_username": "sasl.username",
        "sasl_password": "sasl.password",
        "ssl_cafile": "ssl.ca.location",
        "ssl_certfile": "ssl.certificate.location",
        "ssl_keyfile": "ssl.key.location",
    }
    return {names[k]: v for k, v in settings.items() if k in names}


def admin_config(d: Path) -> dict[str, str]:
    """The main listener's client configuration of a running secured stack (no bootstrap)."""
    conn = connection(d) or {}
    out = librdkafka({k: v for k, v in conn.items() if isinstance(v, str)})
    out.pop("bootstrap.servers", None)
    return out
