"""`--log-format json`: one JSON object a line, with the task's fields on lines logged while
it runs (pure: a handler on a logger, no worker)."""

from __future__ import annotations

import io
import json
import logging
import random
from collections.abc import Iterator

import pytest

from ringleader import logs
from ringleader.errors import ConfigError
from ringleader.worker.app import App
from ringleader.worker.envelope import Envelope, new_task_id
from ringleader.worker.execute import Succeeded, execute
from ringleader.worker.tasks import TaskContext, TaskRegistry


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def parsed(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_object_with_time_level_logger_and_message(lines: io.StringIO) -> None:
    logging.getLogger("some.where").warning("disk %d%% full", 93)
    (line,) = parsed(lines)
    assert line["level"] == "WARNING" and line["logger"] == "some.where"
    assert line["msg"] == "disk 93% full"
    assert str(line["ts"]).endswith("+00:00") and "process" in line and "thread" in line
    assert "task_id" not in line  # outside a task: no task fields at all


def test_a_traceback_stays_inside_its_line(lines: io.StringIO) -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("x").exception("it failed")
    (line,) = parsed(lines)
    assert "ValueError: bad" in str(line["exc"])


def _registry() -> TaskRegistry:
    app = App(namespace="t")

    def chatty(ctx: TaskContext, word: str) -> str:
        ctx.logger.info("context says %s", word)
        logging.getLogger("user.code").warning("plain logger says %s", word)
        return word

    app.task(name="chatty", bind=True, timeout=10)(chatty)  # a timeout: another thread
    app.task(name="chatty_inline", bind=True)(chatty)
    return app.registry


@pytest.mark.parametrize("name", ["chatty", "chatty_inline"])
def test_lines_logged_while_a_task_runs_carry_its_fields(lines: io.StringIO, name: str) -> None:
    env = Envelope(id=new_task_id(), name=name, kwargs={"word": "hi"}, attempt=2)
    out = execute(env, _registry(), random.Random(0), worker_id="w7", where=(5, 11))
    assert isinstance(out, Succeeded)
    got = parsed(lines)
    assert [g["logger"] for g in got] == [f"ringleader.task.{name}", "user.code"]
    for g in got:
        assert {k: g[k] for k in logs.TASK_FIELDS} == {
            "task_id": env.id, "task": name, "attempt": 2, "partition": 5, "generation": 11,
            "worker_id": "w7",
        }  # fmt: skip
    logging.getLogger("after").info("done")
    assert "task_id" not in parsed(lines)[-1]  # the scope ended with the run


def test_a_bad_level_or_format_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="log level must be one of") as e:
        logs.check("LOUD", "text")
    assert e.value.setting == "log_level"
    with pytest.raises(ConfigError, match="log format must be one of") as e:
        logs.check("INFO", "xml")
    assert e.value.setting == "log_format"


def test_librdkafka_lines_go_through_logging_only_when_the_output_is_json(
    lines: io.StringIO,
) -> None:
    assert "logger" in logs.librdkafka()
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h.formatter, logs.JsonFormatter)]:
        root.removeHandler(h)
    try:
        assert logs.librdkafka() == {}
    finally:
        handler = logging.StreamHandler(lines)
        handler.setFormatter(logs.JsonFormatter())
        root.addHandler(handler)
