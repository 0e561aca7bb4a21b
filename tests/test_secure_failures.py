"""Refused clients fail fast and say why: a wrong password, a PLAINTEXT client on the TLS
port, an unknown CA, a hostname mismatch, a Redis password or ACL refusal.

For each: a worker process exits 2 (a configuration error: restarting cannot help) within
30 s and the CLI within 10 s, with one line naming the broker (or Redis), the mechanism and
the user; no password (the right one or the wrong one) appears in any output.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from ringleader.security import KafkaSecurity
from ringleader.worker.settings import AppSettings
from tests.test_secure_dispatch import cli, secure_settings
from tests.worker import procs

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WRONG = "wrong-Pa55-" + uuid.uuid4().hex[:6]
WORKER_LIMIT = 30.0
CLI_LIMIT = 10.0


@dataclasses.dataclass(frozen=True)
class Case:
    settings: AppSettings
    expect: tuple[str, ...]  # every one appears in the message


def _with_redis(s: AppSettings, url: str) -> AppSettings:
    return dataclasses.replace(s, redis=url)


CASES: dict[str, Callable[[Mapping[str, Any], AppSettings], Case]] = {
    "wrong-password": lambda st, s: Case(
        dataclasses.replace(s, security=dataclasses.replace(s.security, sasl_password=WRONG)),
        (s.bootstrap, "SCRAM-SHA-512", "'ringleader'", "authentication failed"),
    ),
    "plaintext-on-tls": lambda st, s: Case(
        dataclasses.replace(s, security=KafkaSecurity()),
        (s.bootstrap, "PLAINTEXT", "TLS or SASL"),
    ),
    "unknown-ca": lambda st, s: Case(
        dataclasses.replace(
            s, security=dataclasses.replace(s.security, ssl_cafile=st["tls"]["other_ca"])
        ),
        (s.bootstrap, "SCRAM-SHA-512", "'ringleader'", "CERTIFICATE_VERIFY_FAILED"),
    ),
    "hostname-mismatch": lambda st, s: Case(
        secure_settings(st, s.namespace, "BADHOST"),
        (st["listeners"]["BADHOST"]["bootstrap"], "SCRAM-SHA-512", "not valid for"),
    ),
    "redis-wrong-password": lambda st, s: Case(
        _with_redis(s, str(st["redis"]).replace(str(_redis_password(st)), WRONG)),
        ("Redis at rediss://ringleader:***@", "'ringleader'", "refused"),
    ),
    "redis-acl-denies-keys": lambda st, s: Case(
        _with_redis(s, _narrow_url(st)),
        ("Redis at rediss://narrow-", "no permissions"),
    ),
}


def _redis_password(stack: Mapping[str, Any]) -> str:
    from urllib.parse import urlsplit

    return str(urlsplit(str(stack["redis"])).password)


def _narrow_url(stack: Mapping[str, Any]) -> str:
    from urllib.parse import urlsplit

    admin: redis.Redis[bytes] = redis.Redis.from_url(stack["redis_admin"])
    name = "narrow-" + uuid.uuid4().hex[:6]
    admin.execute_command("ACL", "SETUSER", name, "on", f">{WRONG}", "~other:*", "+ping", "+set")
    admin.close()
    parts = urlsplit(str(stack["redis"]))
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{name}:{WRONG}@{host}").geturl()


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, secure_stack: Mapping[str, Any], unique_name: str) -> Case:
    return CASES[request.param](secure_stack, secure_settings(secure_stack, unique_name))


def _secrets(stack: Mapping[str, Any]) -> list[str]:
    return [WRONG, str(stack["sasl_password"]), _redis_password(stack)]


def _check_message(text: str, case: Case, stack: Mapping[str, Any]) -> None:
    for want in case.expect:
        assert want in text, f"{want!r} not in:\n{text}"
    for secret in _secrets(stack):
        assert secret not in text, f"a password appears in:\n{text}"


@pytest.fixture
def workers(tmp_path: Path, unique_name: str) -> Iterator[Callable[[AppSettings], procs.Workers]]:
    made: list[procs.Workers] = []

    def make(settings: AppSettings) -> procs.Workers:
        ws = procs.Workers(
            procs.worker_env(
                settings.namespace,
                settings.bootstrap,
                settings.redis,
                security=settings.security,
            ),
            tmp_path,
        )
        made.append(ws)
        return ws

    yield make
    for ws in made:
        ws.close()


def test_a_refused_worker_exits_2_fast_and_says_why(
    case: Case,
    secure_stack: Mapping[str, Any],
    workers: Callable[[AppSettings], procs.Workers],
) -> None:
    ws = workers(case.settings)
    t0 = time.monotonic()
    wp = ws.start("refused", concurrency=1, extra_env={"RINGLEADER_LOG_LEVEL": "DEBUG"})
    rc = wp.wait(WORKER_LIMIT + 15)
    took = time.monotonic() - t0
    log = wp.log_text()
    assert rc == 2, log[-3000:]
    assert took < WORKER_LIMIT, f"exited after {took:.1f}s"
    last = [line for line in log.splitlines() if line.startswith("ringleader worker:")]
    assert last, log[-3000:]
    _check_message(last[-1], case, secure_stack)
    _check_message_free(log, secure_stack)


def _check_message_free(log: str, stack: Mapping[str, Any]) -> None:
    for secret in _secrets(stack):
        assert secret not in log, "a password appears in the worker's DEBUG log"


@pytest.mark.parametrize("command", [["status"], ["submit", "count", "--wait"], ["tail"]])
def test_a_refused_cli_exits_2_within_10s(
    case: Case, secure_stack: Mapping[str, Any], command: list[str]
) -> None:
    if command[0] == "tail" and case.expect[0].startswith("Redis"):
        pytest.skip("tail reads no Redis")
    t0 = time.monotonic()
    out = (
        cli(case.settings, *command, "--timeout", "5")
        if command[0] == "submit"
        else cli(case.settings, *command)
    )
    took = time.monotonic() - t0
    assert out.returncode == 2, out.stdout + out.stderr
    assert took < CLI_LIMIT, f"exited after {took:.1f}s"
    _check_message(out.stderr, case, secure_stack)
    assert "Traceback" not in out.stderr
