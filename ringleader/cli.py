"""The `ringleader` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

# Only the parsers: each names its handler (`ringleader.lazy`), whose module, with the broker
# and Redis clients, loads when that command runs. `--help` and usage errors stay quick.
from ringleader import commands_args, demo_args, registry_args
from ringleader.chaos import args as chaos_args
from ringleader.local import args as local_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ringleader", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    local_args.add_parser(sub)
    demo_args.add_parser(sub)
    chaos_args.add_parser(sub)
    registry_args.add_parser(sub)
    commands_args.add_parsers(sub)
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
