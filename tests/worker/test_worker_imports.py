"""What a worker process imports: the entry module and an App load no client library, and the
worker's runtime loads neither the CLI's libraries nor tenacity and ctypes before it needs them.

Timing is for benchmarks/bench_startup.py; this holds the behaviour that makes it quick. The
lazy names (`ringleader.worker`, `ringleader.registry`) are checked to resolve to the same
objects as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What the counting app reads at import; nothing listens there, and nothing connects.
APP_ENV = {
    "RINGLEADER_NAMESPACE": "imports",
    "RINGLEADER_BOOTSTRAP": "127.0.0.1:1",
    "RINGLEADER_REDIS": "redis://127.0.0.1:1/0",
}

# Never on a worker's path: the CLI's and `submit --from-file`'s libraries, tenacity until a
# retry delay is computed, ctypes until a task times out.
NEVER = ("rich", "msgspec", "tenacity", "ctypes")
# Not loaded by the entry module or by declaring an App: the client libraries and the
# runtime's parts, which `run_worker` imports once it runs.
NOT_BEFORE_RUN = (
    *NEVER, "kafka", "confluent_kafka", "redis", "prometheus_client", "pybreaker",
    "ringleader.coordinator.member", "ringleader.worker.runtime", "ringleader.registry",
)  # fmt: skip


def run_probe(code: str) -> str:
    """Run `code` in a fresh interpreter (cwd: the repository); its last line of stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGLEADER_")}
    cp = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env={**env, **APP_ENV},
    )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.splitlines()[-1]


def loaded_after(code: str, watched: tuple[str, ...]) -> list[str]:
    """The `watched` modules (or their submodules) in sys.modules after `code`."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    modules: list[str] = json.loads(run_probe(probe))
    return [m for m in modules if any(m == w or m.startswith(w + ".") for w in watched)]


@pytest.mark.parametrize(
    "code",
    [
        "import ringleader.worker.run",
        "from ringleader.worker.app import App",
        "import ringleader.worker",
        "from ringleader.worker import App, AppSettings, Task, TaskContext",
    ],
)
def test_the_entry_and_an_app_import_no_client_library(code: str) -> None:
    assert loaded_after(code, NOT_BEFORE_RUN) == []


def test_the_counting_app_imports_no_kafka_library() -> None:
    # It imports redis itself, and App() checks the Redis URL with redis-py's parser.
    loaded = loaded_after("import tests.worker.apps.counting", NOT_BEFORE_RUN)
    assert loaded and {m.split(".")[0] for m in loaded} == {"redis"}


def test_a_worker_loads_no_cli_library_and_nothing_it_may_never_need() -> None:
    code = "import ringleader.worker.run, ringleader.worker.runtime, tests.worker.apps.counting"
    assert loaded_after(code, NEVER) == []


@pytest.mark.parametrize("package", ["ringleader.worker", "ringleader.registry"])
def test_the_lazy_packages_export_what_they_did(package: str) -> None:
    out = run_probe(f"""
        import importlib, json
        pkg = importlib.import_module({package!r})
        same = all(
            getattr(pkg, n) is getattr(importlib.import_module(pkg._HOMES[n]), n)
            for n in pkg.__all__
        )
        print(json.dumps([sorted(pkg.__all__) == sorted(pkg._HOMES), same,
                          set(pkg.__all__) <= set(dir(pkg))]))
    """)
    assert json.loads(out) == [True, True, True]


def test_the_lazy_packages_still_bind_their_submodules() -> None:
    out = run_probe("""
        import ringleader.worker, ringleader.registry
        from ringleader.registry import downstream
        print(ringleader.worker.settings.AppSettings.__name__,
              ringleader.registry.backend.RegistryBackend.__name__, downstream.__name__)
    """)
    assert out == "AppSettings RegistryBackend ringleader.registry.downstream"
    with pytest.raises(AssertionError, match="no attribute 'nope'"):
        run_probe("import ringleader.worker; ringleader.worker.nope")


def test_a_module_of_the_worker_package_loads_only_what_it_needs() -> None:
    loaded = loaded_after("import ringleader.worker.lanes", ("ringleader.worker",))
    assert loaded == ["ringleader.worker", "ringleader.worker.lanes"]
