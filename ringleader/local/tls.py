"""Certificates for a secured local stack, made with `openssl` at start into `<dir>/tls/`.

A CA signs the server certificate (SAN IP:127.0.0.1 and DNS:localhost), a client certificate
(for the SSL listener's `ssl.client.auth=required` and Redis' optional client certificates)
and a server certificate for a host name nobody connects to (SAN DNS:wrong-host.invalid, for
the hostname-mismatch listener). A second, unrelated CA is there for tests of "unknown CA".
Keys are P-256 EC, unencrypted PEM (mode 0600): generated in milliseconds, which RSA is not,
and accepted by the JDK, librdkafka, Python's ssl and Redis' OpenSSL alike.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ringleader.local.procs import ServiceStartError

__all__ = ["TlsFiles", "generate"]

DAYS = 30  # regenerated at every `up`; a short life limits what a copied key is good for
_CURVE = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")

_CA_EXT = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
# Server certificates also carry clientAuth: Kafka's inter-broker side presents its keystore.
_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}"""


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the material in one `tls/` directory."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.dir / "server-key.pem"

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.dir / "client-key.pem"

    @property
    def other_ca(self) -> Path:
        return self.dir / "other-ca.pem"

    @property
    def wrong_host_cert(self) -> Path:
        return self.dir / "wrong-host.pem"

    @property
    def wrong_host_key(self) -> Path:
        return self.dir / "wrong-host-key.pem"


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise ServiceStartError("openssl is not on PATH: --secure makes its certificates with it")
    return found


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ServiceStartError(f"openssl failed ({' '.join(argv[:3])}):\n{proc.stderr[-2000:]}")


def _config(path: Path, cn: str, ext: str) -> Path:
    # A config of our own, so that no system openssl.cnf adds extensions (v3_ca on a leaf).
    path.write_text(f"[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n[ext]\n{ext}")
    return path


def _ca(t: TlsFiles, name: str, cn: str) -> tuple[Path, Path]:
    cert, key = t.dir / f"{name}.pem", t.dir / f"{name}-key.pem"
    cnf = _config(t.dir / f"{name}.cnf", cn, _CA_EXT)
    _run([_openssl(), "req", "-x509", "-new", *_CURVE, "-keyout", str(key), "-out", str(cert),
          "-days", str(DAYS), "-config", str(cnf), "-extensions", "ext"])  # fmt: skip
    return cert, key


def _leaf(t: TlsFiles, name: str, cn: str, usage: str, san: str | None) -> None:
    ext = _LEAF_EXT.format(usage=usage, san=f"subjectAltName = {san}\n" if san else "")
    cnf = _config(t.dir / f"{name}.cnf", cn, ext)
    _run([_openssl(), "req", "-new", *_CURVE,
          "-keyout", str(t.dir / f"{name}-key.pem"), "-out", str(t.dir / f"{name}.pem"),
          "-CA", str(t.ca), "-CAkey", str(t.ca_key), "-days", str(DAYS),
          "-config", str(cnf), "-extensions", "ext"])  # fmt: skip


def generate(d: Path) -> TlsFiles:
    """Fresh material in `d` (replacing any earlier one): five openssl runs, ~50 ms."""
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True, mode=0o700)
    t = TlsFiles(d)
    _ca(t, "ca", "ringleader local CA")
    _leaf(t, "server", "localhost", "serverAuth, clientAuth", "IP:127.0.0.1, DNS:localhost")
    _leaf(t, "client", "ringleader-client", "clientAuth", None)
    _leaf(t, "wrong-host", "wrong-host.invalid", "serverAuth", "DNS:wrong-host.invalid")
    _, other_key = _ca(t, "other-ca", "ringleader unrelated CA")
    other_key.unlink()  # nothing is ever signed by it: it only stands for "a CA we don't trust"
    for cnf in d.glob("*.cnf"):
        cnf.unlink()
    for key in d.glob("*-key.pem"):
        key.chmod(0o600)
    return t
