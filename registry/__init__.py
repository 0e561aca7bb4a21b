"""ringleader registry: service instances in Redis, synced to clients by deltas checked
with a reconcile hashcode; circuit-broken, retried calls to downstream services."""

from ringleader.registry.backend import Eviction, RegistryBackend, SelfPreservation
from ringleader.registry.breakers import BreakerBoard, BreakerSettings, BreakerState, BreakerStatus
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
