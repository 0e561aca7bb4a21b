"""The `ringleader` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ringleader import commands, demo
from ringleader.chaos import cli as chaos_cli
from ringleader.local import cli as local_cli
from ringleader.registry import cli as registry_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringleader", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    local_cli.add_parser(sub)
    demo.add_parser(sub)
    chaos_cli.add_parser(sub)
    registry_cli.add_parser(sub)
    commands.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
