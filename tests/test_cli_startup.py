"""`ringleader --help` and usage errors load no client library: the parser is built from the
standard library and small pure modules, and each command's handler is imported when it runs.

Timing is for benchmarks/bench_startup.py; this holds the behaviour that makes it quick: what
building and using the parser imports, and that every lazy handler names a real function.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from ringleader.cli import build_parser
from ringleader.lazy import LazyHandler, lazy

# What building the parser must not import: the client libraries, and the role packages whose
# __init__ pulls them in.
HEAVY = (
    "confluent_kafka", "kafka", "redis", "rich", "msgpack", "prometheus_client", "msgspec",
    "ringleader.client", "ringleader.worker", "ringleader.coordinator", "ringleader.registry",
)  # fmt: skip


def loaded_after(code: str) -> list[str]:
    """The HEAVY modules (or their submodules) in sys.modules after `code`, in a fresh process."""
    probe = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    cp = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert cp.returncode == 0, cp.stderr
    modules: list[str] = json.loads(cp.stdout.splitlines()[-1])
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_building_the_parser_imports_no_client_library() -> None:
    assert loaded_after("import ringleader.cli; ringleader.cli.build_parser()") == []


def test_importing_the_package_imports_no_client_library() -> None:
    assert loaded_after("import ringleader") == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["submit", "--help"],
        ["worker", "--help"],
        ["registry", "register", "--help"],
        ["chaos", "run", "--help"],
        ["local", "up", "--help"],
        ["demo", "--help"],
        ["bogus"],
        ["tail", "--max", "0"],
        ["submit", "add", "--priority", "bogus"],
        ["registry", "register", "s", "i", "a", "--label", "novalue"],
    ],
    ids=" ".join,
)
def test_help_and_usage_errors_import_no_client_library(argv: list[str]) -> None:
    code = f"""
        import contextlib, io
        from ringleader.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main({argv!r})
            except SystemExit as e:
                assert e.code == (0 if "--help" in {argv!r} else 2), e.code
            else:
                raise AssertionError("argparse did not exit")
    """
    assert loaded_after(code) == []


def parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, bool]]:
    """Every (sub)parser: its command path, itself and whether it has subcommands."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    yield path, parser, bool(subs)
    for action in subs:
        for name, child in action.choices.items():
            yield from parsers(child, (*path, name))


def test_every_command_has_a_lazy_handler_that_resolves_to_a_callable() -> None:
    handlers = {}
    for path, parser, has_subcommands in parsers(build_parser()):
        if func := parser._defaults.get("func"):
            assert isinstance(func, LazyHandler), f"{path}: {func!r} is not lazy"
            assert callable(func.resolve()), func
            handlers[path] = func
        elif not has_subcommands:  # a command to run: its own handler or its group's
            assert any(path[:n] in handlers for n in range(len(path))), f"{path}: no handler"
    names = {" ".join(path) for path in handlers}
    assert names == {
        "worker", "submit", "cancel", "status", "tail", "demo", "registry",
        "chaos list", "chaos run", "local up", "local down", "local status",
    }  # fmt: skip


def test_a_parsed_command_runs_the_function_it_names() -> None:
    from ringleader import commands
    from ringleader.registry import cli as registry_cli

    args = build_parser().parse_args(["tail", "--max", "1"])
    assert args.func.resolve() is commands.tail_cmd
    args = build_parser().parse_args(["registry", "ls"])
    assert args.func.resolve() is registry_cli.run


def test_a_lazy_handler_forwards_its_arguments_and_names_bad_refs() -> None:
    join = lazy("os.path:join")
    assert join("a", "b") == "a/b"
    assert repr(join) == "lazy('os.path:join')"
    with pytest.raises(ValueError, match="module:function"):
        lazy("os.path.join")
    with pytest.raises(AttributeError):
        lazy("os.path:no_such_function").resolve()
    with pytest.raises(TypeError, match="not callable"):
        lazy("os:sep").resolve()


def test_the_old_homes_of_the_parsers_still_build_them() -> None:
    from ringleader import commands, demo
    from ringleader.chaos import cli as chaos_cli
    from ringleader.local import cli as local_cli
    from ringleader.registry import cli as registry_cli

    parser = argparse.ArgumentParser(prog="ringleader")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (local_cli.add_parser, demo.add_parser, chaos_cli.add_parser,
                registry_cli.add_parser, commands.add_parsers):  # fmt: skip
        add(sub)
    helps = {path: p.format_help() for path, p, _ in parsers(parser) if path}
    assert helps == {path: p.format_help() for path, p, _ in parsers(build_parser()) if path}
    assert registry_cli.DEFAULT_LEASE == 90.0


# --- values the light modules repeat from modules too heavy to import for the parser ----------


@pytest.mark.parametrize(
    "text", ["high", "normal", "low", " HIGH ", "Low", "0", "7", "-3", " 2 ", "+1", "bogus",
             "1.5", "", "  ", "hi gh", "0x10"],
)  # fmt: skip
def test_priority_reads_as_the_worker_reads_it(text: str) -> None:
    from ringleader.commands_args import _priority
    from ringleader.worker.lanes import priority_value

    try:
        expected: int | str = priority_value(text)
    except ValueError as e:
        expected = str(e)
    try:
        got: int | str = _priority(text)
    except argparse.ArgumentTypeError as e:
        got = str(e)
    assert got == expected


def test_registry_status_choices_are_the_model_statuses() -> None:
    from ringleader.registry.model import Status
    from ringleader.registry_args import STATUSES

    assert list(STATUSES) == [s.value for s in Status]


def test_chaos_run_defaults_are_the_plan_defaults() -> None:
    from ringleader.chaos.runner import Plan

    args = build_parser().parse_args(["chaos", "run"])
    assert (args.rate, args.drain_timeout) == (Plan().rate, Plan().drain_timeout)
