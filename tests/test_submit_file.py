"""`ringleader submit --from-file FILE`: the line parser on its own, then the command run as a
person would (the console script in a subprocess, on a pipe and under a pty) against a real
broker, judged by its summary, exit code, stderr and the records on `<ns>.tasks`.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from ringleader.cli import main as cli_main
from ringleader.client import Client, idempotent_task_id
from ringleader.submit_file import MAX_REASONS, Summary
from ringleader.task_lines import LineRefused, _checked_line, parse_line
from ringleader.worker.envelope import Envelope, decode
from ringleader.worker.results import Status
from ringleader.worker.settings import AppSettings
from tests.worker.procs import end_offset, wait_until

RINGLEADER = str(Path(sys.executable).with_name("ringleader"))
PARTITIONS = 3

# --- the line parser, no broker ---------------------------------------------------------------


def test_a_plain_line_is_a_task_spec() -> None:
    spec = parse_line(b'{"name": "add", "args": [1, "two", 3.0], "kwargs": {"k": "v"}}\n')
    assert spec.name == "add" and spec.args == [1, "two", 3.0] and spec.kwargs == {"k": "v"}
    assert (spec.key, spec.priority, spec.idempotency_key, spec.not_before) == (None, 0, None, None)
    bare = parse_line('{"name": "noop"}')
    assert bare.args == [] and bare.kwargs == {}


def test_optional_fields_and_nulls() -> None:
    line = {"name": "a", "key": "k1", "priority": "high", "idempotency_key": "once", "delay": 30}
    spec = parse_line(json.dumps(line), now=1000.0)
    assert (spec.key, spec.priority, spec.idempotency_key) == ("k1", 1, "once")
    assert spec.not_before == 1030.0
    assert parse_line('{"name": "a", "priority": "low"}').priority == -1
    assert parse_line('{"name": "a", "priority": -7}').priority == -7
    assert parse_line('{"name": "a", "priority": "5"}').priority == 5
    eta = "2026-12-03T09:00:00+01:00"
    want = datetime(2026, 12, 3, 8, tzinfo=UTC).timestamp()
    assert parse_line(json.dumps({"name": "a", "eta": eta})).not_before == want
    nulls = {"name": "a", "args": None, "kwargs": None, "key": None, "priority": None}
    nulls |= {"idempotency_key": None, "delay": None, "eta": None}
    spec = parse_line(json.dumps(nulls))
    assert spec.args == [] and spec.kwargs == {} and spec.priority == 0
    assert spec.not_before is None
    assert parse_line(b'  {"name": "a"}  \r\n').name == "a"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"name": "a", "args": [1,', "not JSON: Expecting value at the end"),
        (b'{"name": "a"} 2', "not JSON: Extra data at column 15"),
        (b'{"name": "a", x}', "not JSON: Expecting property name enclosed in double quotes at col"),
        (b"\xff\xfe{}", "not UTF-8: byte 0xff at column 1"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON: nested too deeply"),
        (b'["add"]', "expected a JSON object, got an array"),
        (b'"add"', "expected a JSON object, got a string"),
        (b'{"name": "a", "colour": 1, "size": 2}', "unknown field(s) 'colour', 'size'; allowed:"),
        (b'{"args": []}', 'no "name"'),
        (b'{"name": ""}', "name must be a non-empty string, got a string"),
        (b'{"name": 3}', "name must be a non-empty string, got the number 3"),
        (b'{"name": "a", "args": {"x": 1}}', "args must be an array, got an object"),
        (b'{"name": "a", "args": "x"}', "args must be an array, got a string"),
        (b'{"name": "a", "kwargs": [1]}', "kwargs must be an object, got an array"),
        (b'{"name": "a", "key": 7}', "key must be a string, got the number 7"),
        (b'{"name": "a", "priority": true}', "priority must be high, normal, low or an integer"),
        (b'{"name": "a", "priority": 1.5}', "priority must be high, normal, low or an integer"),
        (b'{"name": "a", "priority": "urgent"}', "priority must be an integer or one of high"),
        (b'{"name": "a", "idempotency_key": ""}', "idempotency_key must be a non-empty string"),
        (b'{"name": "a", "idempotency_key": 1}', "idempotency_key must be a non-empty string"),
        (b'{"name": "a", "delay": "5"}', "delay must be a number of seconds, got a string"),
        (b'{"name": "a", "delay": false}', "delay must be a number of seconds, got a boolean"),
        (b'{"name": "a", "delay": -1}', "delay must be >= 0 seconds, got -1"),
        (b'{"name": "a", "delay": NaN}', "delay must be >= 0 seconds, got nan"),
        (b'{"name": "a", "delay": Infinity}', "delay must be >= 0 seconds, got inf"),
        (b'{"name": "a", "delay": -Infinity}', "delay must be >= 0 seconds, got -inf"),
        (
            b'{"name": "a", "delay": 1, "eta": "2026-12-03T09:00:00+00:00"}',
            "give delay or eta, not both",
        ),
        (b'{"name": "a", "eta": "2026-12-03T09:00:00"}', "eta '2026-12-03T09:00:00' needs a UTC"),
        (b'{"name": "a", "eta": "tomorrow"}', "eta 'tomorrow' is not an ISO 8601 time"),
        (b'{"name": "a", "eta": 1700000000}', "eta must be an ISO 8601 string, got the number"),
    ],
)
def test_a_bad_line_is_refused_with_its_reason(line: bytes, reason: str) -> None:
    with pytest.raises(LineRefused) as e:
        parse_line(line)
    assert str(e.value).startswith(reason), str(e.value)


_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
_FIELD = st.sampled_from(["name", "args", "kwargs", "key", "priority", "delay", "x"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_FIELD, _JSON | st.just("a"), max_size=4), st.booleans())
def test_the_fast_path_decides_as_the_checked_one(obj: dict[str, Any], spaced: bool) -> None:
    """parse_line's decoding of the common line in C (msgspec) accepts exactly what the full
    checks accept, with the same result, and refuses with their reason."""
    raw = json.dumps(obj, separators=(", ", ": ") if spaced else (",", ":")).encode()

    def verdict(parse: Any) -> object:
        try:
            return parse(raw, 1000.0)
        except LineRefused as e:
            return f"refused: {e}"

    assert verdict(parse_line) == verdict(_checked_line)


def test_delay_counts_from_the_clock_by_default() -> None:
    before = time.time()
    spec = parse_line('{"name": "a", "delay": 2.5}')
    assert spec.not_before is not None and before + 2.5 <= spec.not_before <= time.time() + 2.5


def test_the_summary_lists_at_most_max_reasons() -> None:
    s = Summary(accepted=5)
    for n in range(MAX_REASONS + 7, 0, -1):  # found out of order: listed by line
        s.refuse(n, f"bad {n}")
    text = s.format_text().splitlines()
    assert text[0] == f"accepted 5, refused {MAX_REASONS + 7}"
    assert text[1] == "line 8: bad 8" and len(text) == 1 + MAX_REASONS + 1
    assert text[-1] == "... and 7 more"
    js = s.to_json()
    assert js["refused"] == MAX_REASONS + 7 and js["refusals_not_listed"] == 7
    assert len(js["refusals"]) == MAX_REASONS and s.exit_code == 2
    assert Summary(accepted=3).exit_code == 0


# --- the command without a broker -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["submit"], "give a task name, or --from-file FILE"),
        (["submit", "add", "--from-file", "x"], "give a task name or --from-file FILE, not both"),
        (["submit", "--from-file", "x", "--wait"], "--wait does not go with --from-file"),
        (["submit", "--from-file", "x", "--args", "[1]"], "--args does not go with --from-file"),
        (["submit", "--from-file", "x", "--priority", "high"], "--priority does not go"),
        (["submit", "--from-file", "x", "--delay", "5"], "--delay does not go with --from-file"),
        (["submit", "add", "--json"], "--json goes with --from-file"),
    ],
)
def test_usage_errors(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage:" in err and says in err, err


def test_a_file_that_cannot_be_read_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "none.jsonl"
    cp = _run("submit", "--from-file", str(missing), env=_env("nowhere"))
    assert cp.returncode == 2 and cp.stdout == ""
    assert cp.stderr == f"ringleader: error: --from-file {missing}: No such file or directory\n"


def test_an_unreachable_broker_exits_3_with_the_summary_so_far(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "t.jsonl"
    path.write_text('{"name": "a"}\n{"name": 1}\n{"name": "b"}\n')
    t0 = time.monotonic()
    env = _env("nowhere", RINGLEADER_BOOTSTRAP=f"127.0.0.1:{port}")
    cp = _run("submit", "--from-file", str(path), "--json", env=env)
    assert cp.returncode == 3, cp.stderr
    assert f"127.0.0.1:{port}" in cp.stderr and cp.stderr.count("\n") == 1
    out = json.loads(cp.stdout)
    assert out["accepted"] == 0 and out["refused"] == 1 and out["stopped_at_line"] == 1
    assert f"127.0.0.1:{port}" in out["error"]
    assert time.monotonic() - t0 < 30


# --- against a broker -------------------------------------------------------------------------

N_LINES = 100_000
PAYLOAD_LIMIT = 8192  # RINGLEADER_MAX_PAYLOAD_BYTES: lines over 16x this are refused unread
BLANK = {3, 50_000, 50_001}
BAD: dict[int, tuple[bytes, str]] = {
    7: (b'{"name": "add", "args": [1,', "not JSON: Expecting value at the end"),
    20_011: (b'{"name": "add", "colour": "red"}', "unknown field(s) 'colour'; allowed: args,"),
    45_000: (b'{"name": "add", "args": {"a": 1}}', "args must be an array, got an object"),
    # Two the packer refuses, in one chunk: the rest of that chunk is still submitted.
    60_001: (
        json.dumps({"name": "big", "args": ["x" * 10_000]}).encode(),
        "task 'big': payload too large: 10",
    ),
    60_500: (b'{"name": "huge", "args": [' + b"9" * 30 + b"]}", "task 'huge': not msgpack"),
    77_777: (b"\xff\xfe{}", "not UTF-8: byte 0xff at column 1"),
    88_888: (b'{"name": "add", "priority": true}', "priority must be high, normal, low or"),
    99_999: (b'{"name": "add", "args": ["' + b"y" * 200_000 + b'"]}', "line longer than 131072"),
}
ACCEPTED = N_LINES - len(BAD) - len(BLANK)


def _good_line(n: int) -> bytes:
    task: dict[str, Any] = {"name": "add", "args": [n, "two", 3.0], "kwargs": {"k": "v"}}
    if n % 1000 == 0:
        task["key"] = f"k{n}"
    if n % 1000 == 1:
        task["idempotency_key"] = f"line-{n}"
    return json.dumps(task).encode()


def _write_tasks(
    path: Path, n_lines: int, bad: dict[int, tuple[bytes, str]], blank: set[int]
) -> None:
    with path.open("wb") as f:
        for n in range(1, n_lines + 1):
            line = b"" if n in blank else bad[n][0] if n in bad else _good_line(n)
            end = b"\r\n" if n == 10 else b"" if n == n_lines else b"\n"  # CRLF; no last newline
            f.write(line + end)


def _env(namespace: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGLEADER_")}
    env.update(RINGLEADER_NAMESPACE=namespace, RINGLEADER_PARTITIONS=str(PARTITIONS))
    env.update(extra)
    return env


def _run(
    *args: str, env: dict[str, str], input: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(
        [RINGLEADER, *args], check=False, input=input, capture_output=True, timeout=timeout, env=env
    )
    return subprocess.CompletedProcess(
        cp.args, cp.returncode, cp.stdout.decode(), cp.stderr.decode()
    )


def _run_measured(
    *args: str, env: dict[str, str], timeout: float = 120
) -> tuple[int, str, str, int]:
    """Exit code, stdout, stderr and peak RSS (KiB) of the command (os.wait4: its own)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([RINGLEADER, *args], stdout=out, stderr=err, env=env)
        reaped: list[tuple[int, int, Any]] = []

        def exited() -> bool:
            got = os.wait4(proc.pid, os.WNOHANG)
            if got[0]:
                reaped.append(got)
            return bool(reaped)

        wait_until(exited, timeout, "submit --from-file to exit", interval=0.05)
        _, status, usage = reaped[0]
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(), err.read().decode(), usage.ru_maxrss


def _records(bootstrap: str, topic: str) -> int:
    return sum(end_offset(bootstrap, topic, p) for p in range(PARTITIONS))


def _read_envelopes(bootstrap: str, topic: str, want: int, timeout: float = 30) -> list[Envelope]:
    """Every record of `topic`, once `want` are there (then a last second for any more)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    got: list[Envelope] = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            got += [decode(m.value()) for m in c.consume(100, 0.2) if m.error() is None]
        got += [decode(m.value()) for m in c.consume(100, 1.0) if m.error() is None]
    finally:
        c.close()
    return got


@pytest.mark.broker
def test_100k_lines_with_bad_ones(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> None:
    """Every good line lands on `<ns>.tasks` once, every bad one is refused with its line
    number, on a pipe stderr stays empty, and memory does not grow with the file."""
    env = _env(
        unique_name,
        RINGLEADER_BOOTSTRAP=kafka_bootstrap,
        RINGLEADER_MAX_PAYLOAD_BYTES=str(PAYLOAD_LIMIT),
    )
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    _write_tasks(small, 20_000, {}, set())
    _write_tasks(big, N_LINES, BAD, BLANK)

    rc, out, err, small_rss = _run_measured("submit", "--from-file", str(small), env=env)
    assert (rc, out, err) == (0, "accepted 20000, refused 0\n", "")
    t0 = time.monotonic()
    rc, out, err, big_rss = _run_measured("submit", "--from-file", str(big), "--json", env=env)
    took = time.monotonic() - t0
    assert rc == 2 and err == "", err  # a pipe: the summary and nothing else
    summary = json.loads(out)
    assert summary["accepted"] == ACCEPTED and summary["refused"] == len(BAD)
    assert summary["lines"] == N_LINES and summary["refusals_not_listed"] == 0
    assert summary["stopped_at_line"] is None and summary["error"] is None
    got = {r["line"]: r["reason"] for r in summary["refusals"]}
    assert sorted(got) == sorted(BAD) == [r["line"] for r in summary["refusals"]]
    for n, (_, reason) in BAD.items():
        assert got[n].startswith(reason), (n, got[n])

    topic = f"{unique_name}.tasks"
    want = 20_000 + ACCEPTED
    wait_until(lambda: _records(kafka_bootstrap, topic) >= want, 30, f"{want} records")
    assert _records(kafka_bootstrap, topic) == want
    # Flat: five times the lines, a few MB more at most (all 100k specs at once take ~100 MB).
    assert big_rss - small_rss < 25_000, (small_rss, big_rss)
    print(f"100k lines in {took:.1f}s; peak RSS {small_rss // 1024} MB (20k), {big_rss // 1024} MB")


@pytest.mark.broker
@pytest.mark.redis
def test_stdin_with_priorities_keys_and_delays(
    broker: str, redis_url: str, unique_name: str
) -> None:
    lines = [
        {"name": "add", "args": [1, 2]},
        {"name": "add", "args": [3], "priority": "high", "key": "k"},
        {"name": "add", "priority": 5},
        {"name": "add", "priority": "low"},
        {"name": "add", "idempotency_key": "later", "delay": 300},
        {"name": "add", "idempotency_key": "at", "eta": "2099-01-01T00:00:00+00:00"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n\n{oops\n"
    env = _env(unique_name, RINGLEADER_BOOTSTRAP=broker, RINGLEADER_REDIS=redis_url)
    cp = _run("submit", "--from-file", "-", env=env, input=text.encode())
    assert cp.returncode == 2 and cp.stderr == "", cp.stderr
    assert cp.stdout.splitlines() == [
        "accepted 6, refused 1",
        "line 8: not JSON: Expecting property name enclosed in double quotes at column 2",
    ]
    # Read back, not watermarks: Tansu reports those otherwise than Kafka (README).
    tasks = f"{unique_name}.tasks"
    on = {sfx: _read_envelopes(broker, tasks + sfx, n) for sfx, n in (("", 1), (".high", 2))}
    on[".low"] = _read_envelopes(broker, tasks + ".low", 1)
    assert [(e.args, e.priority) for e in on[""]] == [([1, 2], 0)]
    assert sorted((e.args, e.priority) for e in on[".high"]) == [([], 5), ([3], 1)]
    assert [e.priority for e in on[".low"]] == [-1]
    settings = AppSettings.from_env(env)
    with Client(settings=settings) as c:  # the delayed two wait in Redis, not on a topic
        for key in ("later", "at"):
            assert c.status(idempotent_task_id(unique_name, key)) is Status.SCHEDULED


@pytest.mark.broker
def test_progress_bar_on_a_terminal_only(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "t.jsonl"
    _write_tasks(path, 30_000, {5: (b"nope", "")}, set())
    env = _env(unique_name, RINGLEADER_BOOTSTRAP=kafka_bootstrap, TERM="xterm-256color")
    env.update(COLUMNS="120", LINES="40")

    tty_err, out, rc = _run_on_pty(["submit", "--from-file", str(path)], env)
    assert rc == 2 and out.startswith("accepted 29999, refused 1\nline 5: not JSON")
    assert "lines read" in tty_err and "submitted" in tty_err, tty_err
    assert "29,999 submitted" in tty_err and "━" in tty_err, tty_err  # the bar, at the end
    assert "\x1b[" in tty_err  # drawn with terminal control sequences

    cp = _run("submit", "--from-file", str(path), env=env)  # the same, stderr on a pipe
    assert cp.returncode == 2 and cp.stderr == "" and cp.stdout.startswith("accepted 29999")


def _run_on_pty(argv: list[str], env: dict[str, str], timeout: float = 120) -> tuple[str, str, int]:
    """Run the CLI with stderr on a pseudo-terminal (stdout on a file): what the terminal
    got, stdout, and the exit code."""
    master, slave = os.openpty()
    try:
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen([RINGLEADER, *argv], stdout=out, stderr=slave, env=env)
            os.close(slave)
            slave = -1
            got = _read_until_closed(master, time.monotonic() + timeout)
            rc = proc.wait(timeout)
            out.seek(0)
            return got.decode(errors="replace"), out.read().decode(), rc
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def _read_until_closed(fd: int, deadline: float) -> bytes:
    """What the pty's master reads until the child's end is closed (EIO) or the deadline."""
    chunks: list[bytes] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child exited and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    else:
        raise AssertionError("the CLI did not close its terminal in time")
    return b"".join(chunks)
