"""ringleader registry: service instances in Redis, synced to clients by deltas checked
with a reconcile hashcode; circuit-broken, retried calls to downstream services.

The names below load on first use (PEP 562): a worker imports the backend, the lease and the
breaker states, and neither the client nor the downstream calls until an App uses them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringleader.registry.backend import Eviction, RegistryBackend, SelfPreservation
    from ringleader.registry.breakers import (
        BreakerBoard,
        BreakerSettings,
        BreakerState,
        BreakerStatus,
    )
    from ringleader.registry.client import RegistryClient, RegistryEvent, SyncPath, SyncResult
    from ringleader.registry.downstream import (
        Backoff,
        Downstream,
        DownstreamError,
        RetryPolicy,
        breaker_rows,
        connect_downstream,
    )
    from ringleader.registry.errors import (
        NoInstances,
        RegistryError,
        RegistryUnavailable,
        ServiceUnavailable,
    )
    from ringleader.registry.hashcode import Hashcode
    from ringleader.registry.lease import LeaseKeeper
    from ringleader.registry.model import Instance, Lease, Metadata, Status
    from ringleader.registry.settings import RegistrySettings

__all__ = [
    "Backoff",
    "BreakerBoard",
    "BreakerSettings",
    "BreakerState",
    "BreakerStatus",
    "Downstream",
    "DownstreamError",
    "Eviction",
    "Hashcode",
    "Instance",
    "Lease",
    "LeaseKeeper",
    "Metadata",
    "NoInstances",
    "RegistryBackend",
    "RegistryClient",
    "RegistryError",
    "RegistryEvent",
    "RegistrySettings",
    "RegistryUnavailable",
    "RetryPolicy",
    "SelfPreservation",
    "ServiceUnavailable",
    "Status",
    "SyncPath",
    "SyncResult",
    "breaker_rows",
    "connect_downstream",
]

# Where each name of __all__ comes from.
_HOMES = {
    "Backoff": "ringleader.registry.downstream",
    "BreakerBoard": "ringleader.registry.breakers",
    "BreakerSettings": "ringleader.registry.breakers",
    "BreakerState": "ringleader.registry.breakers",
    "BreakerStatus": "ringleader.registry.breakers",
    "Downstream": "ringleader.registry.downstream",
    "DownstreamError": "ringleader.registry.downstream",
    "Eviction": "ringleader.registry.backend",
    "Hashcode": "ringleader.registry.hashcode",
    "Instance": "ringleader.registry.model",
    "Lease": "ringleader.registry.model",
    "LeaseKeeper": "ringleader.registry.lease",
    "Metadata": "ringleader.registry.model",
    "NoInstances": "ringleader.registry.errors",
    "RegistryBackend": "ringleader.registry.backend",
    "RegistryClient": "ringleader.registry.client",
    "RegistryError": "ringleader.registry.errors",
    "RegistryEvent": "ringleader.registry.client",
    "RegistrySettings": "ringleader.registry.settings",
    "RegistryUnavailable": "ringleader.registry.errors",
    "RetryPolicy": "ringleader.registry.downstream",
    "SelfPreservation": "ringleader.registry.backend",
    "ServiceUnavailable": "ringleader.registry.errors",
    "Status": "ringleader.registry.model",
    "SyncPath": "ringleader.registry.client",
    "SyncResult": "ringleader.registry.client",
    "breaker_rows": "ringleader.registry.downstream",
    "connect_downstream": "ringleader.registry.downstream",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # next time a plain lookup
        return value
    if not name.startswith("__"):
        # A submodule not imported yet: the eager imports this file made once left those
        # they loaded bound here (`import ringleader.registry`, then `.backend.X`).
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
