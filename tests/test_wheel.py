"""The package as a user gets it: the wheel's only top-level package is `ringleader`, and in
a fresh virtualenv a project with its own `worker.py` and `registry/` beside its tasks runs
`ringleader worker tasks:app` and completes tasks. Plus the direction of imports: the facade
uses the roles, never the other way round.
"""

from __future__ import annotations

import ast
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ringleader.worker.run import worker_env
from ringleader.worker.settings import AppSettings

ROOT = Path(__file__).resolve().parents[1]

# The facade's own modules (the producer API, the CLI, the operator views, the demo) and the
# Client it exports.
FACADE = {
    "Client", "batch", "cli", "client", "commands", "demo", "demo_app", "groupview", "handles",
    "local", "packing", "producing", "status", "supervisor", "tail",
}  # fmt: skip

# What a checkout holds that is not source (see .gitignore): left out of the copy we build from.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", ".hypothesis", ".ringleader",
)  # fmt: skip

TASKS = """
import ringleader.worker
import registry  # the project's own package
import worker  # the project's own module
from ringleader import App

app = App()


@app.task(name="shout")
def shout(text: str) -> str:
    return worker.shout(text) + registry.SUFFIX


@app.task(name="where")
def where() -> list[str]:
    return [worker.__file__, registry.__file__, ringleader.worker.__file__]
"""

SUBMIT = """
import json
import sys

from ringleader import Client

with Client() as c:
    handles = c.submit_many([{"name": "shout", "args": [f"task {i}"]} for i in range(20)])
    handles.append(c.submit("where"))
    print(json.dumps([h.result(timeout=float(sys.argv[1])) for h in handles]))
"""


def _run(*cmd: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    cp = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=300, check=False,
        cwd=cwd, env=env,
    )  # fmt: skip
    assert cp.returncode == 0, f"{cmd}: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
    return cp.stdout


def _installed(requirement: str) -> bool:
    req = Requirement(requirement)
    try:
        return req.specifier.contains(metadata.version(req.name), prereleases=True)
    except metadata.PackageNotFoundError:
        return False


def build_wheel(out: Path, scratch: Path) -> Path:
    """`pip wheel --no-deps` of a copy of the checkout (an in-tree build would leave build/
    and egg-info behind in the repository).

    Offline (`--no-build-isolation`) when this environment has what pyproject.toml's
    build-system requires; otherwise pip fetches the build backend as it normally does
    (a venv's bundled setuptools can be older than the one the metadata needs).
    """
    src = scratch / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_NOT_SOURCE)
    with (ROOT / "pyproject.toml").open("rb") as f:
        build_requires = tomllib.load(f)["build-system"]["requires"]
    offline = ["--no-build-isolation"] if all(map(_installed, build_requires)) else []
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *offline, "-w", out, src)
    [wheel] = out.glob("ringleader-*.whl")
    return wheel


def dependency_closure(name: str) -> list[metadata.Distribution]:
    """The installed distributions `name` requires, transitively (extras and markers that
    do not apply here left out); `name` itself not included."""
    found: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = canonicalize_name(todo.pop())
        if key in found:
            continue
        dist = found[key] = metadata.distribution(key)
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    del found[canonicalize_name(name)]
    return list(found.values())


def link_dependencies(into: Path) -> list[str]:
    """Symlink every top-level entry (packages, modules, bundled libs, dist-info) of
    ringleader's dependency closure from this interpreter's environment into `into`.

    Why this way: the test must run offline, and the local .venv has the dependencies but
    not their wheels. Putting the .venv's site-packages itself on the fresh venv's path
    would also bring the editable ringleader (its dist-info, its finder) and every dev tool;
    this directory holds only what the wheel declares, so a dependency missing from
    pyproject.toml fails the test instead of being found by accident.
    """
    into.mkdir()
    names = []
    for dist in dependency_closure("ringleader"):
        names.append(dist.metadata["Name"])
        tops = {f.parts[0] for f in dist.files or () if f.parts[0] not in ("..", "__pycache__")}
        for top in tops:
            if top.endswith(".pth"):
                continue  # a .pth does nothing outside a site directory
            target = Path(str(dist.locate_file(top)))
            if not (into / top).exists():
                (into / top).symlink_to(target)
    return names


def make_venv(at: Path, wheel: Path, deps: Path) -> Path:
    """A fresh virtualenv (no system site-packages) with the wheel installed and `deps` on
    its path through a .pth file; returns its bin directory."""
    _run(sys.executable, "-m", "venv", "--without-pip", at)
    python = at / "bin" / "python"
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    (Path(purelib.strip()) / "ringleader_test_deps.pth").write_text(f"{deps}\n")
    # This interpreter's pip installs into the fresh venv (pip --python): no pip inside it.
    pip = (sys.executable, "-m", "pip", "--python", python)
    _run(*pip, "install", "--no-deps", "--no-index", "-q", wheel)
    _run(*pip, "check")  # every requirement of the wheel is met from `deps`
    return at / "bin"


def user_project(at: Path) -> Path:
    at.mkdir()
    (at / "tasks.py").write_text(textwrap.dedent(TASKS))
    (at / "submit.py").write_text(textwrap.dedent(SUBMIT))
    (at / "worker.py").write_text("def shout(text: str) -> str:\n    return text.upper()\n")
    (at / "registry").mkdir()
    (at / "registry" / "__init__.py").write_text('SUFFIX = "!"\n')
    return at


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def facade_imports(path: Path) -> list[str]:
    """What this file imports from the facade (`ringleader.client`, `ringleader.Client`...)."""
    return sorted(
        n for n in _imported(path) if n.startswith("ringleader.") and n.split(".")[1] in FACADE
    )


def test_the_roles_never_import_the_facade(tmp_path: Path) -> None:
    for role in ("coordinator", "worker", "registry"):
        for path in sorted((ROOT / role).rglob("*.py")):
            assert not facade_imports(path), f"{path.relative_to(ROOT)} imports the facade"
    # and the check does see the forms an import of the facade takes
    (tmp_path / "m.py").write_text(
        "import ringleader.tail\nfrom ringleader import Client, env\n"
        "from ringleader.client import TaskSpec\nfrom ringleader.worker import app\n"
    )
    assert facade_imports(tmp_path / "m.py") == [
        "ringleader.Client", "ringleader.client", "ringleader.client.TaskSpec", "ringleader.tail"
    ]  # fmt: skip


def test_importing_a_pure_module_does_not_load_the_client() -> None:
    probe = (
        "import sys, ringleader.coordinator.membership; "
        "print(sorted(m for m in ('confluent_kafka', 'redis', 'ringleader.client') "
        "if m in sys.modules))"
    )
    assert _run(sys.executable, "-c", probe).strip() == "[]"


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.redis
def test_the_wheel_installs_only_ringleader_and_runs_a_user_project(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, unique_name: str
) -> None:
    wheel = build_wheel(tmp_path / "dist", tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        [top_level] = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert z.read(top_level).decode().split() == ["ringleader"]
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"ringleader"}
    for module in ("coordinator/membership.py", "worker/runtime.py", "registry/backend.py"):
        assert f"ringleader/{module}" in names  # the role folders, under ringleader/

    deps = tmp_path / "deps"
    assert "confluent-kafka" in {canonicalize_name(n) for n in link_dependencies(deps)}
    bin_dir = make_venv(tmp_path / "venv", wheel, deps)
    venv = str(tmp_path / "venv")
    # Installed, ringleader is the wheel's, and the role folders are not top-level names.
    probe = (
        "import importlib.util, json, ringleader, ringleader.worker.runtime; "
        "print(json.dumps([ringleader.__file__, "
        "[importlib.util.find_spec(n) is None for n in ('coordinator', 'worker', 'registry')]]))"
    )
    where, absent = json.loads(_run(bin_dir / "python", "-c", probe, cwd=tmp_path))
    assert where.startswith(venv) and absent == [True, True, True]

    project = user_project(tmp_path / "project")
    settings = AppSettings(
        namespace=unique_name, bootstrap=kafka_bootstrap, redis=redis_url, partitions=3
    )
    env = worker_env(settings, session_ms=6000)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):  # nothing of this checkout
        env.pop(var, None)
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(bin_dir / "ringleader"), "worker", "tasks:app", "--id", "wheel-w1"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        results = json.loads(_run(bin_dir / "python", "submit.py", "120", cwd=project, env=env))
        assert results[:-1] == [f"TASK {i}!" for i in range(20)]
        user_worker, user_registry, ours = results[-1]
        assert user_worker == str(project / "worker.py")
        assert user_registry == str(project / "registry" / "__init__.py")
        assert ours.startswith(venv)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        print(log_path.read_text()[-5000:])
    assert "Traceback" not in log_path.read_text()
