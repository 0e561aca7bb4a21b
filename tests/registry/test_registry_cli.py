"""`registry ls|register|deregister` through argparse, against real Redis."""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Iterator

import pytest
import redis

from ringleader.registry import cli

pytestmark = pytest.mark.redis


@pytest.fixture
def run(redis_url: str, unique_name: str) -> Iterator[object]:
    parser = argparse.ArgumentParser(prog="ringleader")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))

    def invoke(*argv: str) -> tuple[int, str]:
        args = parser.parse_args([*argv, "--redis-url", redis_url, "--prefix", unique_name])
        out = io.StringIO()
        code = args.func(args, out)
        return code, out.getvalue()

    yield invoke
    r = redis.Redis.from_url(redis_url)
    for k in r.scan_iter(match=f"{unique_name}:*"):
        r.delete(k)
    r.close()


def test_register_ls_deregister(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run(
        "registry",
        "register",
        "pay",
        "p1",
        "http://10.0.0.1:80",
        "--label",
        "tier=gold",
        "--zone",
        "eu-1",
        "--capacity",
        "4",
    )
    assert code == 0 and "registered pay/p1" in out
    run("registry", "register", "pay", "p2", "http://10.0.0.2:80", "--status", "DOWN")
    code, out = run("registry", "ls")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["SERVICE", "INSTANCE", "ADDRESS", "STATUS"]
    assert "p1" in lines[1] and "eu-1" in lines[1] and "DOWN" in lines[2]
    code, out = run("registry", "ls", "pay", "--json")
    data = json.loads(out)
    assert [i["instance"] for i in data["instances"]] == ["p1", "p2"]
    assert data["instances"][0]["labels"] == {"tier": "gold"}
    assert data["hashcode"]["status"] == "DOWN_1_UP_1_"
    assert data["self_preservation"]["paused"] is False
    code, out = run("registry", "deregister", "pay", "p1", "--json")
    assert code == 0 and json.loads(out) == {"deregistered": "pay/p1", "found": True}
    code, out = run("registry", "deregister", "pay", "p1")
    assert code == 1 and "was not registered" in out


def test_bad_input_is_a_clear_error(run, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    code, _ = run("registry", "register", "bad/name", "x", "addr")
    assert code == 2
    assert "service name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("registry", "register", "s", "x", "addr", "--label", "novalue")


def test_settings_read_the_redis_variable_app_and_client_read() -> None:
    from ringleader.registry.settings import RegistrySettings

    both = {"RINGLEADER_REDIS": "redis://a:1/0", "RINGLEADER_REDIS_URL": "redis://b:2/0"}
    assert RegistrySettings.from_env(both).redis_url == "redis://a:1/0"
    old = {"RINGLEADER_REDIS_URL": "redis://b:2/0"}
    assert RegistrySettings.from_env(old).redis_url == "redis://b:2/0"  # the older name
    assert RegistrySettings.from_env({}).redis_url == RegistrySettings().redis_url


def test_a_bad_setting_is_named_and_the_command_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ringleader.errors import ConfigError
    from ringleader.registry.settings import RegistrySettings

    with pytest.raises(
        ConfigError, match="RINGLEADER_REGISTRY_LOG_SIZE must be an integer, got 'x'"
    ):
        RegistrySettings.from_env({"RINGLEADER_REGISTRY_LOG_SIZE": "x"})
    monkeypatch.setenv("RINGLEADER_SELF_PRESERVATION_SHARE", "lots")
    parser = argparse.ArgumentParser(prog="ringleader")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))  # builds regardless
    args = parser.parse_args(["registry", "ls", "--redis", "redis://127.0.0.1:1/0"])
    assert args.func(args, io.StringIO()) == 2
    assert "RINGLEADER_SELF_PRESERVATION_SHARE must be a number, got 'lots'" in (
        capsys.readouterr().err
    )


def test_unreachable_redis_is_named_and_the_command_exits_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """RegistryBackend turns redis-py's connection error into RegistryUnavailable."""
    parser = argparse.ArgumentParser(prog="ringleader")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["registry", "ls", "--redis", "redis://127.0.0.1:1/0"])
    assert args.func(args, io.StringIO()) == 3
    err = capsys.readouterr().err
    assert "Redis unreachable" in err and "redis://127.0.0.1:1/0" in err
    assert "Traceback" not in err


def test_register_takes_a_lease_and_permanent_needs_a_flag(run) -> None:  # type: ignore[no-untyped-def]
    run("registry", "register", "db", "d1", "10.0.0.1:5432")
    run("registry", "register", "db", "d2", "10.0.0.2:5432", "--permanent")
    code, out = run("registry", "ls", "db", "--json")
    rows = {i["instance"]: i for i in json.loads(out)["instances"]}
    now = time.time()
    assert rows["d1"]["lease_duration"] == cli.DEFAULT_LEASE
    assert rows["d1"]["lease_expires_at"] - now <= cli.DEFAULT_LEASE + 1
    assert rows["d2"]["lease_expires_at"] - now > 365 * 24 * 3600
    code, out = run("registry", "renew", "db", "d1", "--json")
    assert code == 0 and json.loads(out) == {"renewed": "db/d1", "found": True}
    code, _ = run("registry", "renew", "db", "nope")
    assert code == 1
