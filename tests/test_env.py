"""The one environment parser (`ringleader.env`) and every settings class that uses it: a bad
boolean or number fails the same way, naming the variable, whichever class reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from ringleader import env
from ringleader.coordinator.settings import MemberSettings
from ringleader.errors import ConfigError, RingleaderError
from ringleader.registry.settings import RegistrySettings
from ringleader.worker.settings import (
    AppSettings,
    KafkaSecurity,
    WorkerSettings,
    member_settings_from_env,
)

# -- the parser ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("true", True),
        (" Yes ", True),
        ("ON", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_booleans(raw: str, value: bool) -> None:
    assert env.parse_bool("V", raw) is value


@pytest.mark.parametrize(
    ("parse", "raw", "message"),
    [
        (
            env.parse_bool,
            "maybe",
            "V must be a boolean (true/false, yes/no, on/off, 1/0), got 'maybe'",
        ),
        (env.parse_bool, "2", "V must be a boolean"),
        (env.parse_int, "twelve", "V must be an integer, got 'twelve'"),
        (env.parse_int, "1.5", "V must be an integer, got '1.5'"),
        (env.parse_float, "soon", "V must be a number, got 'soon'"),
        (env.parse_float, "nan", "V must be a finite number, got 'nan'"),
        (env.parse_float, "-inf", "V must be a finite number, got '-inf'"),
    ],
)
def test_bad_values_name_the_variable(
    parse: Callable[[str, str], object], raw: str, message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        parse("V", raw)
    assert str(e.value).startswith(message)
    assert e.value.setting == "V"
    assert isinstance(e.value, ValueError) and isinstance(e.value, RingleaderError)


def test_numbers() -> None:
    assert env.parse_int("V", " 42 ") == 42
    assert env.parse_float("V", "2") == 2.0 and env.parse_float("V", "1e-3") == 0.001


@dataclass(frozen=True)
class Sample:
    name: str
    flag: bool = False
    count: int = 1
    ratio: float = 0.5
    label: str | None = None
    renamed: int = field(default=0, metadata=env.env_names("X_NEW", "X_OLD"))
    hidden: float = field(default=1.0, metadata=env.env_names())

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"count must be >= 1, got {self.count}", setting="count")


def test_fields_are_read_by_type_and_name() -> None:
    got = env.from_env(
        Sample,
        {
            "X_NAME": "n",
            "X_FLAG": "yes",
            "X_COUNT": "3",
            "X_RATIO": "0.25",
            "X_LABEL": "l",
            "X_OLD": "7",
            "X_HIDDEN": "9",  # a field without variables is never read
        },
        prefix="X_",
    )
    assert got == Sample("n", True, 3, 0.25, "l", 7, 1.0)
    assert (
        env.from_env(Sample, {"X_NAME": "n", "X_NEW": "8", "X_OLD": "7"}, prefix="X_").renamed == 8
    )


def test_absent_and_empty_mean_unset_and_explicit_wins() -> None:
    empty = {"X_NAME": "n", "X_FLAG": "", "X_COUNT": "", "X_LABEL": ""}
    assert env.from_env(Sample, empty, prefix="X_") == Sample("n")
    got = env.from_env(
        Sample, {"X_NAME": "n", "X_COUNT": "x"}, prefix="X_", explicit={"count": 5, "flag": None}
    )
    assert (got.count, got.flag) == (5, False)  # the bad variable is never parsed


def test_a_required_field_must_be_set() -> None:
    with pytest.raises(ConfigError, match="X_NAME is not set"):
        env.from_env(Sample, {"X_NAME": ""}, prefix="X_")


def test_validation_of_an_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^X_COUNT: count must be >= 1, got 0$") as e:
        env.from_env(Sample, {"X_NAME": "n", "X_COUNT": "0"}, prefix="X_")
    assert e.value.setting == "X_COUNT"
    with pytest.raises(ConfigError, match=r"^count must be >= 1"):  # explicit: no variable
        env.from_env(Sample, {"X_NAME": "n"}, prefix="X_", explicit={"count": 0})


def test_to_env_reads_back() -> None:
    s = Sample("n", True, 3, 0.25, None, 7)
    out = env.to_env(s, prefix="X_")
    assert out == {
        "X_NAME": "n",
        "X_FLAG": "true",
        "X_COUNT": "3",
        "X_RATIO": "0.25",
        "X_NEW": "7",
    }
    assert env.from_env(Sample, out, prefix="X_") == s


def test_a_field_type_without_parser_is_a_programming_error() -> None:
    @dataclass
    class Odd:
        items: list[str] = field(default_factory=list)

    with pytest.raises(TypeError, match="no environment parser"):
        env.from_env(Odd, {"RINGLEADER_ITEMS": "a,b"})


# -- every settings class: the same errors ---------------------------------------------------

Reader = Callable[[dict[str, str]], object]

READERS: dict[str, Reader] = {
    "app": AppSettings.from_env,
    "security": KafkaSecurity.from_env,
    "worker": WorkerSettings.from_env,
    "member": lambda e: MemberSettings.from_env({"RINGLEADER_GROUP_ID": "g", **e}),
    "workers-group": lambda e: member_settings_from_env("ns", "w1", e),
    "registry": RegistrySettings.from_env,
}


@pytest.mark.parametrize(
    ("reader", "var", "raw", "message"),
    [
        ("app", "RINGLEADER_PARTITIONS", "twelve", "must be an integer, got 'twelve'"),
        ("app", "RINGLEADER_CONCURRENCY", "2.5", "must be an integer, got '2.5'"),
        ("app", "RINGLEADER_RESULT_TTL", "soon", "must be a number, got 'soon'"),
        ("app", "RINGLEADER_MAX_PAYLOAD_BYTES", "1MB", "must be an integer, got '1MB'"),
        ("security", "RINGLEADER_SSL_CHECK_HOSTNAME", "maybe", "must be a boolean"),
        ("app", "RINGLEADER_SSL_CHECK_HOSTNAME", "maybe", "must be a boolean"),
        ("worker", "RINGLEADER_WORKER_EVENTS", "sometimes", "must be a boolean"),
        ("worker", "RINGLEADER_WORKER_RECORD_WINDOW", "many", "must be an integer, got 'many'"),
        ("worker", "RINGLEADER_WORKER_DRAIN_TIMEOUT", "inf", "must be a finite number"),
        ("worker", "RINGLEADER_WORKER_BATCH_TTL", "1m", "must be a number, got '1m'"),
        ("member", "RINGLEADER_SESSION_TIMEOUT_MS", "10s", "must be an integer, got '10s'"),
        ("workers-group", "RINGLEADER_HEARTBEAT_INTERVAL_MS", "x", "must be an integer"),
        ("registry", "RINGLEADER_REGISTRY_LOG_SIZE", "x", "must be an integer, got 'x'"),
        ("registry", "RINGLEADER_SELF_PRESERVATION_SHARE", "lots", "must be a number"),
        ("registry", "RINGLEADER_SELF_PRESERVATION_MIN_LEASES", "ten", "must be an integer"),
    ],
)
def test_a_bad_variable_is_named_the_same_way_by_every_class(
    reader: str, var: str, raw: str, message: str
) -> None:
    environ = {var: raw}
    if "SSL" in var:
        environ["RINGLEADER_SECURITY_PROTOCOL"] = "SSL"
    with pytest.raises(ConfigError) as e:
        READERS[reader](environ)
    assert str(e.value).startswith(f"{var} {message}"), str(e.value)
    assert e.value.setting == var


@pytest.mark.parametrize(
    ("reader", "var", "raw", "message"),
    [
        ("app", "RINGLEADER_PARTITIONS", "0", "partitions must be an integer in [1, 100000]"),
        ("app", "RINGLEADER_RESULT_TTL", "-1", "result_ttl must be a number of seconds > 0"),
        ("app", "RINGLEADER_NAMESPACE", "a b", "namespace must be letters"),
        ("security", "RINGLEADER_SECURITY_PROTOCOL", "TLS", "security_protocol must be one of"),
        ("worker", "RINGLEADER_WORKER_FETCH_BATCH", "0", "fetch_batch must be an integer >= 1"),
        ("worker", "RINGLEADER_WORKER_COMMIT_INTERVAL", "0", "commit_interval must be a number"),
        ("member", "RINGLEADER_FENCE_MARGIN_MS", "-1", "fence_margin_ms must be >= 0"),
        ("registry", "RINGLEADER_SELF_PRESERVATION_SHARE", "2", "self_preservation_share"),
        ("registry", "RINGLEADER_REGISTRY_LOG_SIZE", "0", "log_size must be >= 1"),
    ],
)
def test_a_refused_value_names_its_variable_and_setting(
    reader: str, var: str, raw: str, message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        READERS[reader]({var: raw})
    assert str(e.value).startswith(f"{var}: {message}"), str(e.value)


@pytest.mark.parametrize("reader", sorted(READERS))
def test_empty_variables_leave_the_defaults(reader: str) -> None:
    variables = {
        "RINGLEADER_PARTITIONS",
        "RINGLEADER_SSL_CHECK_HOSTNAME",
        "RINGLEADER_SECURITY_PROTOCOL",
        "RINGLEADER_WORKER_EVENTS",
        "RINGLEADER_WORKER_DRAIN_TIMEOUT",
        "RINGLEADER_SESSION_TIMEOUT_MS",
        "RINGLEADER_GROUP_INSTANCE_ID",
        "RINGLEADER_REGISTRY_LOG_SIZE",
        "RINGLEADER_REDIS",
    }
    assert READERS[reader](dict.fromkeys(variables, "")) == READERS[reader]({})


def test_member_settings_need_a_group() -> None:
    with pytest.raises(ConfigError, match="RINGLEADER_GROUP_ID is not set"):
        MemberSettings.from_env({"RINGLEADER_GROUP_ID": ""})
    with pytest.raises(ConfigError, match="MY_GROUP_ID is not set"):
        MemberSettings.from_env({}, prefix="MY_")
    # the workers' group has a default, also when the variable is set but empty
    assert member_settings_from_env("ns", "w1", {"RINGLEADER_GROUP_ID": ""}).group_id == (
        "ns.workers"
    )


def test_every_class_reads_its_variables() -> None:
    w = WorkerSettings.from_env(
        {"RINGLEADER_WORKER_EVENTS": "off", "RINGLEADER_WORKER_BATCH_TTL": "6"}
    )
    assert (w.events, w.batch_ttl) == (False, 6.0)
    m = MemberSettings.from_env(
        {"RINGLEADER_GROUP_ID": "g", "RINGLEADER_SESSION_TIMEOUT_MS": "20000"}
    )
    assert (m.group_id, m.session_timeout_ms, m.group_instance_id) == ("g", 20000, None)
    r = RegistrySettings.from_env(
        {"RINGLEADER_REDIS_URL": "redis://b:2/0", "RINGLEADER_SELF_PRESERVATION_SHARE": "0.5"}
    )
    assert (r.redis_url, r.self_preservation_share) == ("redis://b:2/0", 0.5)


def test_secrets_do_not_appear_in_errors() -> None:
    environ: dict[str, Any] = {
        "RINGLEADER_SASL_USERNAME": "u",
        "RINGLEADER_SASL_PASSWORD": "hunter2",  # set without SASL: refused
    }
    with pytest.raises(ConfigError) as e:
        KafkaSecurity.from_env(environ)
    assert "hunter2" not in str(e.value)
