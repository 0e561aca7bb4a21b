"""ringleader registry: service instances in Redis, synced to clients by deltas checked
with a reconcile hashcode; circuit-broken, retried calls to downstream services."""

from registry.backend import Eviction, RegistryBackend, SelfPreservation
from registry.breakers import BreakerBoard, BreakerSettings, BreakerState, BreakerStatus
from registry.client import RegistryClient, RegistryEvent, SyncPath, SyncResult
from registry.downstream import (
    Downstream,
    DownstreamError,
    RetryPolicy,
    breaker_rows,
    connect_downstream,
)
from registry.errors import NoInstances, RegistryError, ServiceUnavailable
from registry.hashcode import Hashcode
from registry.lease import LeaseKeeper
from registry.model import Instance, Lease, Metadata, Status
from registry.settings import RegistrySettings

__all__ = [
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
    "RetryPolicy",
    "SelfPreservation",
    "ServiceUnavailable",
    "Status",
    "SyncPath",
    "SyncResult",
    "breaker_rows",
    "connect_downstream",
]
