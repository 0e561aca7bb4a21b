"""ringleader: a distributed task dispatcher on Kafka-style group coordination.

This package is a thin facade; the parts live in `coordinator`, `worker` and `registry`.
"""

from ringleader.worker.app import App
from ringleader.worker.client import Client

__version__ = "0.1.0"

__all__ = ["App", "Client", "__version__"]
