"""The compose backend's faults as docker CLI calls. No Docker engine runs here, so a
stand-in `docker` on PATH records each call and answers `ps`/`inspect` as a running
project would; what is checked is the command each fault becomes."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from ringleader.chaos.backends.compose import ComposeBackend

FAKE_DOCKER = r"""#!PYTHON
import json, sys
from pathlib import Path
here = Path(__file__).parent
args = sys.argv[1:]
with open(here / "calls.jsonl", "a") as f:
    f.write(json.dumps(args) + "\n")
dead = here / "dead"
if args[0] == "ps":
    key = "label=com.docker.compose.service="
    service = next(a[len(key):] for a in args if a.startswith(key))
    print(f"id-{service}")
elif args[0] == "inspect" and "NetworkSettings" in args[2]:
    print(json.dumps({"bridge": {}, "ringleader_default": {}}))
elif args[0] == "inspect":
    gone = dead.exists() and args[3] in dead.read_text().split()
    print(json.dumps({"Running": not gone, "ExitCode": 137 if gone else 0}))
elif args[0] == "run":
    print("cid-1")
elif args[0] == "kill" and args[2] == "KILL":
    with open(dead, "a") as f:
        f.write(args[3] + "\n")
"""


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "docker"
    exe.write_text(FAKE_DOCKER.replace("PYTHON", sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    return tmp_path


def calls(d: Path) -> list[list[str]]:
    path = d / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def backend() -> ComposeBackend:
    return ComposeBackend("ringleader", "ringleader:local", "kafka-1:19092", "redis://redis:6379/0",
                          "redis://ledger:6379/0")  # fmt: skip


def test_it_finds_the_project_network_and_starts_workers_of_the_image_on_it(docker: Path) -> None:
    b = backend()
    assert b.network == "ringleader_default"
    b.start_worker("w1", b.settings("chaos-x", 6), extra_env={"RINGLEADER_CHAOS_FAULT": "x"})
    run = calls(docker)[-1]
    assert run[:2] == ["run", "-d"]
    assert run[run.index("--network") + 1] == "ringleader_default"
    assert run[run.index("--entrypoint") + 1] == "python"
    env = {run[i + 1] for i, a in enumerate(run) if a == "-e"}
    assert {"RINGLEADER_NAMESPACE=chaos-x", "RINGLEADER_BOOTSTRAP=kafka-1:19092",
            "RINGLEADER_CHAOS_LEDGER=redis://ledger:6379/0", "RINGLEADER_CHAOS_FAULT=x",
            "RINGLEADER_SESSION_TIMEOUT_MS=6000"} <= env  # fmt: skip
    assert run[run.index("ringleader:local") :][:5] == [
        "ringleader:local", "-m", "ringleader.worker.run", "ringleader.chaos.app:app", "--id",
    ]  # fmt: skip
    assert not any(e.startswith("PATH=") for e in env)  # only the app's variables go in


def test_each_fault_is_the_docker_way_of_doing_it(docker: Path) -> None:
    b = backend()
    b.start_worker("w1", b.settings("chaos-x", 6))
    n = len(calls(docker))
    b.signal("w1", signal.SIGSTOP)
    b.signal("w1", signal.SIGCONT)
    b.signal("w1", signal.SIGTERM)
    b.cut("w1")
    b.heal("w1")
    b.kill_broker(2)
    b.signal("w1", signal.SIGKILL)
    acts = [c for c in calls(docker)[n:] if c[0] != "inspect" and c[0] != "ps"]
    assert acts == [
        ["pause", "cid-1"],
        ["unpause", "cid-1"],
        ["kill", "-s", "TERM", "cid-1"],
        ["network", "disconnect", "ringleader_default", "cid-1"],
        ["network", "connect", "ringleader_default", "cid-1"],
        ["kill", "-s", "KILL", "id-kafka-2"],
        ["kill", "-s", "KILL", "cid-1"],
    ]
    assert not b.alive("w1") and b.exit_code("w1") == 137
    b.stop_workers()
    tail = [c[:2] for c in calls(docker)[-2:]]
    assert tail == [["stop", "-t"], ["rm", "-f"]]
