"""The listeners of a secured local Kafka node, and the SCRAM users its storage starts with.

Every listener a client can see authenticates (all on 127.0.0.1):

* SASL_SSL — the main one (`bootstrap`): SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN;
* SSL — `ssl.client.auth=required`, a client certificate from the stack's CA;
* SASL_PLAINTEXT — PLAIN;
* BADHOST — SASL_SSL presenting a certificate for wrong-host.invalid: a client that checks
  host names must refuse it;
* INTERNAL — SASL_PLAINTEXT with SCRAM-SHA-512 as user `admin`: what brokers replicate
  over (advertised, as KRaft requires of the inter-broker listener, but only brokers log in
  as admin);
* CONTROLLER — PLAINTEXT, never advertised (the KRaft quorum, loopback only).

The key stores are PEM files (`ssl.keystore.type=PEM`): no keystore password, no keytool run.
The SCRAM users are written into the metadata log by the storage tool (`--add-scram`),
so they exist before the broker first listens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ringleader.local.procs import free_port
from ringleader.local.tls import TlsFiles

__all__ = ["ADMIN_USER", "LISTENERS", "USER", "SecurePorts", "format_args", "properties"]

USER = "ringleader"
ADMIN_USER = "admin"
# Client-facing listeners besides the main SASL_SSL one, in the order they are reported.
LISTENERS = ("SSL", "SASL_PLAINTEXT", "BADHOST")
_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule required"
_PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule required"


@dataclass(frozen=True)
class SecurePorts:
    """A node's ports besides its main (SASL_SSL) and controller ones."""

    ssl: int
    sasl_plaintext: int
    badhost: int
    internal: int

    @classmethod
    def plan(cls) -> SecurePorts:
        return cls(free_port(), free_port(), free_port(), free_port())

    def of(self, listener: str) -> int:
        return {"SSL": self.ssl, "SASL_PLAINTEXT": self.sasl_plaintext, "BADHOST": self.badhost}[
            listener
        ]


def _keystore(d: Path, cert: Path, key: Path, name: str) -> Path:
    # Kafka's file-based PEM key store: the (unencrypted PKCS#8) key, then the chain.
    path = d / f"{name}-keystore.pem"
    path.write_text(key.read_text() + cert.read_text())
    path.chmod(0o600)
    return path


def properties(
    *,
    port: int,
    controller_port: int,
    ports: SecurePorts,
    tls: TlsFiles,
    password: str,
    admin_password: str,
) -> dict[str, str]:
    """What replaces the PLAINTEXT listener settings of `kafka._properties`."""
    main = _keystore(tls.dir, tls.server_cert, tls.server_key, "server")
    wrong = _keystore(tls.dir, tls.wrong_host_cert, tls.wrong_host_key, "wrong-host")
    addr = {
        "SASL_SSL": port,
        "SSL": ports.ssl,
        "SASL_PLAINTEXT": ports.sasl_plaintext,
        "BADHOST": ports.badhost,
        "INTERNAL": ports.internal,
    }
    advertised = ",".join(f"{name}://127.0.0.1:{p}" for name, p in addr.items())
    protocols = {**{n: n for n in addr}, "BADHOST": "SASL_SSL", "INTERNAL": "SASL_PLAINTEXT"}
    plain_users = f'{_PLAIN} user_{USER}="{password}";'
    props = {
        "listeners": f"{advertised},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": advertised,
        "inter.broker.listener.name": "INTERNAL",
        "listener.security.protocol.map": ",".join(
            f"{n}:{p}" for n, p in {**protocols, "CONTROLLER": "PLAINTEXT"}.items()
        ),
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(main),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        "listener.name.badhost.ssl.keystore.location": str(wrong),
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": plain_users,
        "listener.name.internal.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        # The broker logs in to INTERNAL as admin (client side) and checks SCRAM users there.
        "listener.name.internal.scram-sha-512.sasl.jaas.config": (
            f'{_SCRAM} username="{ADMIN_USER}" password="{admin_password}";'
        ),
    }
    for name in ("sasl_ssl", "badhost"):
        props[f"listener.name.{name}.sasl.enabled.mechanisms"] = "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"
        props[f"listener.name.{name}.scram-sha-512.sasl.jaas.config"] = f"{_SCRAM};"
        props[f"listener.name.{name}.scram-sha-256.sasl.jaas.config"] = f"{_SCRAM};"
        props[f"listener.name.{name}.plain.sasl.jaas.config"] = plain_users
    return props


def format_args(password: str, admin_password: str) -> list[str]:
    """The storage tool's `--add-scram` flags: user `ringleader` with both SCRAM mechanisms,
    and `admin` (inter-broker). Passwords are URL-safe base64, so they need no quoting."""
    out = []
    for mech in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        out.append(f"--add-scram={mech}=[name={USER},password={password}]")
    out.append(f"--add-scram=SCRAM-SHA-512=[name={ADMIN_USER},password={admin_password}]")
    return out
