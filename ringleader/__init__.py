"""ringleader: a distributed task dispatcher on Kafka-style group coordination.

This package is the facade: `App` (what workers run), `Client` (the producer API), the CLI
and the operator views live here; the roles live in `ringleader.coordinator`,
`ringleader.worker` and `ringleader.registry`.

`App` and `Client` are loaded on first use (PEP 562), so importing a role's pure module
(`ringleader.coordinator.membership`, say) does not pull in confluent-kafka and Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringleader.client import Client
    from ringleader.worker.app import App

__version__ = "0.1.0"

__all__ = ["App", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "App":
        from ringleader.worker.app import App

        return App
    if name == "Client":
        from ringleader.client import Client

        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
