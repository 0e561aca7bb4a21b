"""`local up --secure`: every listener and the Redis ACL, proved with real clients.

One secured stack serves the whole file (the session `secure_stack`); a failure to connect
is detected from the client's own error report, so a refused login costs a handshake, not
a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ringleader.local import cli, procs, redis_acl, secure, services
from ringleader.local.tls import TlsFiles

pytestmark = [pytest.mark.broker, pytest.mark.redis]

KAFKA_FIELDS = {"security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
                "ssl_cafile"}  # fmt: skip


def conf(settings: dict[str, str], **extra: Any) -> dict[str, Any]:
    """confluent-kafka configuration from printed (KafkaSecurity-named) settings."""
    return {**secure.librdkafka(settings), "log_level": 0, **extra}


def main_listener(stack: dict[str, Any]) -> dict[str, str]:
    return {k: stack[k] for k in ("bootstrap", *KAFKA_FIELDS)}


def metadata(config: dict[str, Any], timeout: float = 20.0) -> tuple[bool, list[str]]:
    """(whether the brokers answered metadata, the errors the client reported). Returns at
    the first error report: a refused handshake or login never turns into success later."""
    errors: list[str] = []
    full: dict[str, Any] = {**config, "error_cb": lambda e: errors.append(f"{e.name()}: {e}")}
    admin = AdminClient(full)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if admin.list_topics(timeout=1).brokers:
                return True, errors
        except Exception:  # noqa: BLE001 - "no answer within 1 s"; the errors say why
            pass
        admin.poll(0.1)  # error_cb is served by poll
        if errors:
            return False, errors
    return False, errors


def redis_denied(call: Any) -> str:
    with pytest.raises(redis.exceptions.NoPermissionError) as e:
        call()
    return str(e.value)


# ---- Kafka ------------------------------------------------------------------------------


def test_sasl_ssl_scram_sha_512_produces_and_consumes(secure_stack: dict[str, Any]) -> None:
    settings = main_listener(secure_stack)
    assert settings["security_protocol"] == "SASL_SSL"
    assert settings["sasl_mechanism"] == "SCRAM-SHA-512"
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    # Hostname checking on (the librdkafka default, spelled out): the certificate names
    # 127.0.0.1.
    c = conf(settings, **{"ssl.endpoint.identification.algorithm": "https"})
    producer = Producer({**c, "acks": "all"})
    producer.produce(topic, b"over SASL_SSL")  # the topic is created on first use
    assert producer.flush(30) == 0
    consumer = Consumer({**c, "group.id": topic, "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got.append(msg.value() or b"")
        assert got == [b"over SASL_SSL"]
    finally:
        consumer.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_main_listener_takes_the_other_mechanisms(
    secure_stack: dict[str, Any], mechanism: str
) -> None:
    ok, errors = metadata(conf({**main_listener(secure_stack), "sasl_mechanism": mechanism}))
    assert ok, errors


def test_wrong_password_is_refused(secure_stack: dict[str, Any]) -> None:
    ok, errors = metadata(conf({**main_listener(secure_stack), "sasl_password": "wrong"}))
    assert not ok
    assert any("Authentication failed" in e for e in errors), errors


def test_unknown_ca_is_refused(secure_stack: dict[str, Any]) -> None:
    other = secure_stack["tls"]["other_ca"]
    ok, errors = metadata(conf({**main_listener(secure_stack), "ssl_cafile": other}))
    assert not ok
    assert any("certificate verify failed" in e for e in errors), errors


def test_ssl_listener_needs_a_client_certificate(secure_stack: dict[str, Any]) -> None:
    ssl = secure_stack["listeners"]["SSL"]
    assert ssl["security_protocol"] == "SSL"
    without = {k: v for k, v in ssl.items() if k not in ("ssl_certfile", "ssl_keyfile")}
    ok, errors = metadata(conf(without))
    assert not ok
    assert any("bad certificate" in e for e in errors), errors  # the broker's TLS alert
    ok, errors = metadata(conf(ssl))
    assert ok, errors


def test_sasl_plaintext_plain(secure_stack: dict[str, Any]) -> None:
    lst = secure_stack["listeners"]["SASL_PLAINTEXT"]
    assert (lst["security_protocol"], lst["sasl_mechanism"]) == ("SASL_PLAINTEXT", "PLAIN")
    ok, errors = metadata(conf(lst))
    assert ok, errors
    ok, errors = metadata(conf({**lst, "sasl_password": "wrong"}))
    assert not ok
    assert any("Authentication failed" in e for e in errors), errors


def test_badhost_fails_hostname_checking_and_passes_without(
    secure_stack: dict[str, Any],
) -> None:
    bad = secure_stack["listeners"]["BADHOST"]
    ok, errors = metadata(conf(bad, **{"ssl.endpoint.identification.algorithm": "https"}))
    assert not ok
    assert any("certificate verify failed" in e for e in errors), errors
    ok, errors = metadata(conf(bad, **{"ssl.endpoint.identification.algorithm": "none"}))
    assert ok, errors


def test_no_listener_without_authentication_is_advertised(secure_stack: dict[str, Any]) -> None:
    props = dict(
        line.split("=", 1)
        for line in (Path(secure_stack["dir"]) / "kafka-1" / "server.properties")
        .read_text()
        .splitlines()
        if "=" in line
    )
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    advertised = [a.split("://")[0] for a in props["advertised.listeners"].split(",")]
    assert "CONTROLLER" not in advertised
    for name in advertised:
        proto = protocols[name]
        assert proto.startswith("SASL_") or (
            proto == "SSL" and props[f"listener.name.{name.lower()}.ssl.client.auth"] == "required"
        ), name
    host, port = secure_stack["bootstrap"].split(",")[0].split(":")
    ok, _ = metadata({"bootstrap.servers": f"{host}:{port}", "log_level": 0}, timeout=5)
    assert not ok  # PLAINTEXT to the main port


# ---- Redis ------------------------------------------------------------------------------


def test_redis_ringleader_user_stays_inside_its_acl(secure_stack: dict[str, Any]) -> None:
    r: redis.Redis[bytes] = redis.Redis.from_url(secure_stack["redis"])
    key = f"ringleader:test-secure:{uuid.uuid4().hex}"
    try:
        assert r.hset(key, "f", "1") == 1
        assert r.hgetall(key) == {b"f": b"1"}
        assert "flushall" in redis_denied(r.flushall)
        assert "config" in redis_denied(lambda: r.config_get("dir"))
        assert "keys" in redis_denied(lambda: r.set("not-ringleader", "1"))
        script = r.register_script("return redis.call('GET', KEYS[1])")
        assert script(keys=[f"{key}:s"]) is None  # scripts run (EVALSHA), on its keys only
        assert "keys" in redis_denied(lambda: script(keys=["not-ringleader"]))
        assert "eval" in redis_denied(lambda: r.execute_command("EVAL", "return 1", 0))
    finally:
        r.delete(key)
        r.close()
    admin: redis.Redis[bytes] = redis.Redis.from_url(secure_stack["redis_admin"])
    try:
        default, rules = admin.acl_getuser("default"), admin.acl_getuser("ringleader")
        assert default is not None and rules is not None
        assert default["enabled"] is False
        assert rules["keys"] == [redis_acl.RINGLEADER_KEYS]
    finally:
        admin.close()


def test_redis_refuses_plain_unauthenticated_and_untrusted(secure_stack: dict[str, Any]) -> None:
    url = secure_stack["redis"]
    port = int(url.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=5).ping()
    ca = secure_stack["tls"]["ca"]
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}").ping()
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis.Redis.from_url(url.replace(ca, secure_stack["tls"]["other_ca"])).ping()


def test_redis_client_certificate_and_asyncio_from_url(secure_stack: dict[str, Any]) -> None:
    t = secure_stack["tls"]
    url = f"{secure_stack['redis']}&ssl_certfile={t['client_cert']}&ssl_keyfile={t['client_key']}"
    assert redis.Redis.from_url(url).ping()

    async def ping() -> bool:
        c = aredis.Redis.from_url(url)
        try:
            return bool(await c.ping())
        finally:
            await c.aclose()  # type: ignore[attr-defined]  # types-redis 4.6 predates it

    assert asyncio.run(ping())


# ---- the stack's record: no password outside secrets.json --------------------------------


def test_secrets_stay_in_secrets_json(secure_stack: dict[str, Any]) -> None:
    d = Path(secure_stack["dir"])
    assert stat.S_IMODE((d / secure.SECRETS).stat().st_mode) == 0o600
    stack = services.load(d)
    assert stack is not None and stack.secure
    passwords = [secure_stack["sasl_password"], secure_stack["redis"].split(":")[2].split("@")[0]]
    shown = [(d / "stack.json").read_text(), *(Path(s.log).read_text() for s in stack.services)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli._print_secure(stack, secure_stack, as_json=False)
    status = subprocess.run(
        [sys.executable, "-m", "ringleader.cli", "local", "status", "--dir", str(d)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for text in (*shown, out.getvalue(), status.stdout):
        for pw in passwords:
            assert pw not in text
    with contextlib.redirect_stdout(out := io.StringIO()):
        cli._print_secure(stack, secure_stack, as_json=True)
    printed = json.loads(out.getvalue())
    assert KAFKA_FIELDS | {"bootstrap", "redis", "redis_admin", "listeners", "tls"} <= set(printed)
    assert set(printed["listeners"]) == {"SSL", "SASL_PLAINTEXT", "BADHOST"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ringleader.cli", "local", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_cli_up_json_then_down_stops_everything(tmp_path: Path) -> None:
    # Redis only: the file's Kafka is the session stack (one Kafka at a time on the machine).
    d = tmp_path / "stack"
    up = run_cli("up", "--redis", "--secure", "--dir", str(d), "--json")
    assert up.returncode == 0, up.stderr
    stack = services.load(d)
    assert stack is not None
    pids = [s.pid for s in stack.services]
    try:
        conn = json.loads(up.stdout)
        assert {"bootstrap", "redis", "redis_admin", "tls"} <= set(conn)
        assert conn["bootstrap"] is None and conn["redis"].startswith("rediss://ringleader:")
        assert set(conn["tls"]) == {"ca", "other_ca", "client_cert", "client_key"}
        assert all(os.path.exists(p) for p in conn["tls"].values())
        assert redis.Redis.from_url(conn["redis"]).ping()
    finally:
        down = run_cli("down", "--dir", str(d))
    assert down.returncode == 0, down.stderr
    assert not any(procs.alive(p) for p in pids)
    assert not (d / secure.SECRETS).exists()


def test_start_up_errors_hide_the_passwords(tmp_path: Path) -> None:
    sec = secure.Setup(dir=tmp_path, tls=TlsFiles(tmp_path))
    args = " ".join(sec.kafka_format_args())
    assert sec.kafka_password in args
    assert sec.hide(f"format failed: {args}").count("***") == 3
    assert sec.kafka_password not in sec.hide(args)


def test_cli_secure_needs_kafka_or_redis(tmp_path: Path) -> None:
    r = run_cli("up", "--tansu", "--secure", "--dir", str(tmp_path))
    assert r.returncode == 2 and "--secure" in r.stderr
