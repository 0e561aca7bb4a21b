from __future__ import annotations

import logging
from typing import Any

import pytest

from ringleader.security import KafkaSecurity
from ringleader.worker.app import App
from ringleader.worker.envelope import Envelope
from ringleader.worker.errors import ConfigError
from ringleader.worker.retry import Backoff
from ringleader.worker.settings import AppSettings
from ringleader.worker.tasks import Task, TaskContext, TaskRegistry, default_task_name

TID = "ab" * 16
CA = __file__  # any readable file: KafkaSecurity checks that its files exist


def test_explicit_args_win_over_env_over_defaults() -> None:
    env = {
        "RINGLEADER_NAMESPACE": "envns",
        "RINGLEADER_BOOTSTRAP": "k1:9092,k2:9093",
        "RINGLEADER_REDIS": "redis://r:6379/2",
        "RINGLEADER_PARTITIONS": "6",
    }
    s = AppSettings.from_env(env)
    assert (s.namespace, s.bootstrap, s.redis, s.partitions) == (
        "envns",
        "k1:9092,k2:9093",
        "redis://r:6379/2",
        6,
    )
    s2 = AppSettings.from_env(env, namespace="mine", partitions=3)
    assert (s2.namespace, s2.partitions, s2.bootstrap) == ("mine", 3, "k1:9092,k2:9093")
    d = AppSettings.from_env({})
    assert d == AppSettings()


def test_app_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGLEADER_NAMESPACE", "fromenv")
    monkeypatch.setenv("RINGLEADER_BOOTSTRAP", "b:1")
    app = App(redis="redis://x:1/0")
    assert app.namespace == "fromenv"
    assert app.settings.bootstrap == "b:1"
    assert app.settings.redis == "redis://x:1/0"
    assert app.topics.tasks == "fromenv.tasks"


@pytest.mark.parametrize(
    ("kw", "setting"),
    [
        ({"namespace": "bad ns"}, "namespace"),
        ({"namespace": "a/b"}, "namespace"),
        ({"namespace": "x" * 300}, "namespace"),
        ({"bootstrap": "nohost"}, "bootstrap"),
        ({"bootstrap": "h:99999"}, "bootstrap"),
        ({"bootstrap": ""}, "bootstrap"),
        ({"redis": "http://x"}, "redis"),
        ({"redis": "redis://"}, "redis"),
        ({"partitions": 0}, "partitions"),
        ({"concurrency": 0}, "concurrency"),
        ({"result_ttl": -1.0}, "result_ttl"),
        ({"max_payload_bytes": 1}, "max_payload_bytes"),
    ],
)
def test_validation_names_the_setting(kw: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        AppSettings.from_env({}, **kw)


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("RINGLEADER_PARTITIONS", "twelve"),
        ("RINGLEADER_RESULT_TTL", "soon"),
        ("RINGLEADER_SSL_CHECK_HOSTNAME", "maybe"),
    ],
)
def test_bad_environment_names_the_variable(var: str, raw: str) -> None:
    env = {var: raw}
    if "SSL" in var:
        env["RINGLEADER_SECURITY_PROTOCOL"] = "SSL"
    with pytest.raises(ConfigError, match=var):
        AppSettings.from_env(env)


def test_config_error_is_a_ringleader_value_error() -> None:
    from ringleader.coordinator.errors import RingleaderError

    with pytest.raises(RingleaderError):
        App(namespace="has space")
    with pytest.raises(ValueError, match="namespace"):
        App(namespace="has space")


def test_security_maps_to_librdkafka_and_kafka_python() -> None:
    sec = KafkaSecurity(
        security_protocol="sasl_ssl",
        sasl_mechanism="scram-sha-512",
        sasl_username="u",
        sasl_password="s3cret",
        ssl_cafile=CA,
        ssl_check_hostname=False,
    )
    assert sec.librdkafka_config() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "s3cret",
        "ssl.ca.location": CA,
        "ssl.endpoint.identification.algorithm": "none",
    }
    assert sec.kafka_python_config() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": CA,
        "ssl_check_hostname": False,
    }
    assert "s3cret" not in repr(sec)
    s = AppSettings(bootstrap="h:1", security=sec)
    assert s.librdkafka_config()["bootstrap.servers"] == "h:1"
    assert KafkaSecurity().librdkafka_config() == {"security.protocol": "PLAINTEXT"}


def test_security_from_env() -> None:
    env = {
        "RINGLEADER_SECURITY_PROTOCOL": "SSL",
        "RINGLEADER_SSL_CAFILE": CA,
        "RINGLEADER_SSL_CHECK_HOSTNAME": "false",
    }
    sec = AppSettings.from_env(env).security
    assert sec == KafkaSecurity("SSL", ssl_cafile=CA, ssl_check_hostname=False)


@pytest.mark.parametrize(
    "settings",
    [
        AppSettings(),
        AppSettings(
            namespace="ns.a",
            bootstrap="h1:1,h2:2",
            redis="rediss://r:6380/2",
            partitions=7,
            concurrency=3,
            result_ttl=1.5,
            max_payload_bytes=4096,
            security=KafkaSecurity(
                "SASL_SSL",
                sasl_mechanism="SCRAM-SHA-512",
                sasl_username="u",
                sasl_password="p",
                ssl_cafile=CA,
                ssl_check_hostname=False,
            ),
        ),
    ],
)
def test_to_env_reads_back_as_the_same_settings(settings: AppSettings) -> None:
    env = settings.to_env()
    assert all(k.startswith("RINGLEADER_") for k in env)
    assert AppSettings.from_env(env) == settings


@pytest.mark.parametrize(
    ("kw", "setting"),
    [
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_SSL"}, "sasl_mechanism"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN"}, "sasl_username"),
        ({"sasl_username": "u"}, "sasl_username"),
        ({"ssl_cafile": CA}, "ssl_cafile"),
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "ssl_cafile"),
        ({"security_protocol": "SSL", "ssl_keyfile": CA}, "ssl_certfile"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_security_validation(kw: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        KafkaSecurity(**kw)


def test_task_decorator_forms() -> None:
    app = App(environ={})

    @app.task
    def plain(a: int, b: int) -> int:
        return a + b

    @app.task(name="custom", retries=5, backoff=2.0, timeout=3, bind=True)
    def bound(ctx: TaskContext, x: int) -> str:
        return f"{ctx.task_id}:{ctx.attempt}:{x}"

    assert isinstance(plain, Task) and plain(2, 3) == 5
    assert plain.name == f"{__name__}.test_task_decorator_forms.<locals>.plain"
    assert bound.name == "custom" and bound.retry.max_retries == 5
    assert bound.retry.backoff.initial == 2.0 and bound.timeout == 3 and bound.bind
    assert app.registry.names() == sorted([plain.name, "custom"])
    ctx = TaskContext.for_envelope(Envelope(id=TID, name="custom", attempt=2), "w1")
    assert bound.run(ctx, [7], {}) == f"{TID}:2:7"
    assert plain.run(ctx, [1], {"b": 1}) == 2


def test_custom_backoff_object_and_retry_on() -> None:
    app = App(environ={})
    b = Backoff(initial=0.1, maximum=1, jitter=0)

    @app.task(backoff=b, retry_on=(ConnectionError,))
    def f() -> None: ...

    assert f.retry.backoff is b and f.retry.retry_on == (ConnectionError,)


def test_duplicate_name_rejected_same_function_allowed() -> None:
    reg = TaskRegistry()

    def f() -> None: ...

    def g() -> None: ...

    t = Task("n", f, retry=App(environ={}).task(f).retry)
    reg.register(t)
    reg.register(Task("n", f, retry=t.retry))
    with pytest.raises(ConfigError, match="'n' is already registered"):
        reg.register(Task("n", g, retry=t.retry))
    assert "n" in reg and reg.get("missing") is None and len(reg) == 1


@pytest.mark.parametrize(
    "kw",
    [{"retries": -1}, {"timeout": 0}, {"timeout": -2.0}, {"name": ""}, {"backoff": "x"}],
)
def test_bad_task_options(kw: dict[str, Any]) -> None:
    app = App(environ={})
    with pytest.raises(ConfigError):
        app.task(**kw)(lambda: None)


def test_default_task_name() -> None:
    assert default_task_name(len) == "builtins.len"


def test_context_logger_carries_task_id(caplog: pytest.LogCaptureFixture) -> None:
    ctx = TaskContext.for_envelope(Envelope(id=TID, name="n", attempt=3, idempotency_key="k"))
    assert ctx.idempotency_key == "k"
    with caplog.at_level(logging.INFO, logger="ringleader.task.n"):
        ctx.logger.info("hello %s", "there")
    rec = caplog.records[-1]
    assert rec.getMessage() == f"[{TID} #3] hello there"
    assert rec.task_id == TID  # type: ignore[attr-defined]


def test_settings_reprs_never_show_a_password() -> None:
    from ringleader.registry.settings import RegistrySettings

    sec = KafkaSecurity(
        "SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u", sasl_password="kafka-s3cret"
    )
    s = AppSettings(redis="rediss://u:redis-s3cret@h:6380/0", security=sec)
    text = repr(s) + str(s) + repr(RegistrySettings(redis_url=s.redis)) + sec.describe()
    assert "s3cret" not in text
    assert "rediss://u:***@h:6380/0" in text and "PLAIN user 'u'" in text
