"""The options of `ringleader registry ls|register|renew|deregister`.

The handler is `ringleader.registry.cli.run`, loaded when the command runs. This module is
outside the `ringleader.registry` package on purpose: importing anything in that package runs
its __init__, which loads redis and msgpack, too much for building `ringleader --help`. So
`--status`'s choices repeat `registry.model.Status`'s values (tests/test_cli_startup.py holds
the two together).
"""

from __future__ import annotations

import argparse

from ringleader.lazy import lazy

#: An instance registered by hand holds its lease this long unless renewed (`registry renew`,
#: or registering again), like a worker's own: the group leader evicts lapsed leases.
DEFAULT_LEASE = 90.0
#: `registry.model.Status`, in its order.
STATUSES = ("UP", "DOWN", "STARTING", "OUT_OF_SERVICE")


def _label(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise argparse.ArgumentTypeError(f"label must be KEY=VALUE, got {text!r}")
    return k, v


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `registry ls|register|deregister` to the main CLI's subparsers."""
    # Defaults come from the environment when the command runs (a bad variable there must
    # not break building the parser for every other command).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis",
        "--redis-url",
        dest="redis_url",
        help="Redis URL (default: RINGLEADER_REDIS, else redis://127.0.0.1:6379/0)",
    )
    common.add_argument(
        "--prefix", help="registry key prefix (default: RINGLEADER_REGISTRY_PREFIX)"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")

    p = subparsers.add_parser("registry", help="service registry (Redis)")
    sub = p.add_subparsers(dest="registry_command", required=True)

    p_ls = sub.add_parser("ls", parents=[common], help="list instances")
    p_ls.add_argument("service", nargs="?", help="only this service")

    p_reg = sub.add_parser("register", parents=[common], help="register an instance")
    p_reg.add_argument("service")
    p_reg.add_argument("instance_id")
    p_reg.add_argument("address")
    p_reg.add_argument("--status", choices=list(STATUSES), default="UP")
    p_reg.add_argument("--label", type=_label, action="append", default=[], metavar="K=V")
    p_reg.add_argument("--zone", default="")
    p_reg.add_argument("--capacity", type=int, default=1)
    p_reg.add_argument("--version", default="")
    how_long = p_reg.add_mutually_exclusive_group()
    how_long.add_argument(
        "--lease",
        type=float,
        default=DEFAULT_LEASE,
        help=f"lease seconds (default {DEFAULT_LEASE:g}); renew it before it lapses",
    )
    how_long.add_argument(
        "--permanent",
        action="store_true",
        help="never lapses: stays until deregistered (a service nothing renews)",
    )

    p_renew = sub.add_parser("renew", parents=[common], help="renew an instance's lease")
    p_renew.add_argument("service")
    p_renew.add_argument("instance_id")

    p_dereg = sub.add_parser("deregister", parents=[common], help="remove an instance")
    p_dereg.add_argument("service")
    p_dereg.add_argument("instance_id")
    p.set_defaults(func=lazy("ringleader.registry.cli:run"))
