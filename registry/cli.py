"""`ringleader registry ls|register|deregister`: the registry for people.

The lead wires it in with `registry.cli.add_parser(subparsers)` (defined in
`ringleader.registry_args`, which the main CLI imports itself: nothing of this package loads
for `--help`); the parser sets `func` to `run`, loaded on the call, so the main CLI calls
`args.func(args)` and exits with its return code.
The functions `ls`, `register` and `deregister` are usable without argparse.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any, TextIO

from ringleader.errors import ConfigError
from ringleader.redisurl import redact
from ringleader.registry.backend import RegistryBackend
from ringleader.registry.errors import InvalidInstance, RegistryError, RegistryUnavailable
from ringleader.registry.model import Instance, Metadata, Status, split_key
from ringleader.registry.settings import RegistrySettings
from ringleader.registry_args import DEFAULT_LEASE, add_parser  # noqa: F401  (re-exported)

# Exit codes, as the main CLI's: bad input or settings 2, Redis unreachable 3.
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

#: `--permanent`: an entry nobody renews that stays until deregistered (ten years).
PERMANENT_LEASE = 10 * 365 * 24 * 3600.0


def ls(backend: RegistryBackend, service: str | None = None) -> list[dict[str, Any]]:
    """One row per instance (sorted), with its lease expiry; plus nothing else."""
    snap = backend.snapshot()
    leases = backend.leases()
    rows = []
    for key in sorted(snap.instances):
        inst = Instance.decode(snap.instances[key])
        if service is not None and inst.service != service:
            continue
        m = inst.metadata
        rows.append(
            {
                "service": inst.service,
                "instance": inst.instance_id,
                "address": inst.address,
                "status": inst.status.value,
                "zone": m.zone,
                "capacity": m.capacity,
                "version": m.version,
                "labels": m.label_map,
                "lease_duration": inst.lease_duration,
                "lease_expires_at": leases.get(key),
            }
        )
    return rows


def summary(backend: RegistryBackend) -> dict[str, Any]:
    """Registry-wide facts for `ringleader status`: seq, hashcode, self-preservation."""
    snap = backend.snapshot()
    sp = backend.self_preservation()
    services = sorted({split_key(k)[0] for k in snap.instances})
    return {
        "seq": snap.seq,
        "hashcode": {"status": snap.hashcode.status, "digest": snap.hashcode.digest},
        "instance_count": len(snap.instances),
        "services": services,
        "self_preservation": {
            "paused": sp.paused,
            "since": sp.since,
            "lapsed": sp.lapsed,
            "total": sp.total,
        },
    }


def register(backend: RegistryBackend, instance: Instance, now: float | None = None) -> int:
    """Register (or update) an instance; returns the change's sequence number."""
    return backend.register(instance, time.time() if now is None else now)


def deregister(backend: RegistryBackend, service: str, instance_id: str) -> bool:
    """Cancel an instance; False if it was not registered."""
    return backend.cancel(service, instance_id)


def format_table(rows: list[dict[str, Any]], now: float | None = None) -> str:
    if not rows:
        return "(no instances)"
    now = time.time() if now is None else now
    headers = ["SERVICE", "INSTANCE", "ADDRESS", "STATUS", "ZONE", "CAP", "VERSION", "LEASE"]
    table = [headers]
    for r in rows:
        exp = r["lease_expires_at"]
        lease = "-" if exp is None else ("lapsed" if exp <= now else f"{exp - now:.0f}s")
        table.append(
            [r["service"], r["instance"], r["address"], r["status"], r["zone"] or "-",
             str(r["capacity"]), r["version"] or "-", lease]
        )  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        env = RegistrySettings.from_env()
        settings = replace(
            env, redis_url=args.redis_url or env.redis_url, prefix=args.prefix or env.prefix
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    backend = RegistryBackend.from_settings(settings)
    try:
        return _command(backend, args, out)
    except RegistryUnavailable as e:
        print(f"error: {e} (at {redact(settings.redis_url)})", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (RegistryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        backend.redis.close()


def _command(backend: RegistryBackend, args: argparse.Namespace, out: TextIO) -> int:
    if args.registry_command == "ls":
        rows = ls(backend, args.service)
        if args.json:
            print(json.dumps({"instances": rows, **summary(backend)}), file=out)
        else:
            print(format_table(rows), file=out)
        return 0
    if args.registry_command == "register":
        inst = Instance(
            args.service,
            args.instance_id,
            args.address,
            Status(args.status),
            Metadata.of(dict(args.label), args.zone, args.capacity, args.version),
            PERMANENT_LEASE if args.permanent else args.lease,
        )
        seq = register(backend, inst)
        if args.json:
            print(json.dumps({"registered": inst.key, "seq": seq}), file=out)
        else:
            print(f"registered {inst.key} at {inst.address} ({inst.status})", file=out)
        return 0
    if args.registry_command == "renew":
        ok = backend.renew(args.service, args.instance_id, time.time())
        key = f"{args.service}/{args.instance_id}"
        if args.json:
            print(json.dumps({"renewed": key, "found": ok}), file=out)
        else:
            print(f"renewed {key}" if ok else f"{key} is not registered", file=out)
        return 0 if ok else 1
    if args.registry_command == "deregister":
        ok = deregister(backend, args.service, args.instance_id)
        key = f"{args.service}/{args.instance_id}"
        if args.json:
            print(json.dumps({"deregistered": key, "found": ok}), file=out)
        else:
            print(f"deregistered {key}" if ok else f"{key} was not registered", file=out)
        return 0 if ok else 1
    raise InvalidInstance(f"unknown registry command {args.registry_command!r}")
