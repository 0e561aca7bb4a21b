"""Errors of the coordination layer.

Kafka error codes that the group protocol answers with are kept as an IntEnum so the pure
membership state machine can react to them without importing any client library. Exceptions
derive from `ringleader.errors.RingleaderError` and say whether retrying the same call can
succeed (`retriable`), as kafka-python's errors do. `RingleaderError`, `ConfigError` and
`BrokerUnavailableError` live in `ringleader.errors` (every role raises them) and are
re-exported here, where they were first defined.
"""

from __future__ import annotations

from enum import IntEnum

from ringleader.errors import BrokerUnavailableError, ConfigError, RingleaderError

__all__ = [
    "COORDINATOR_MOVED",
    "BrokerUnavailableError",
    "ConfigError",
    "CoordinatorError",
    "ErrorCode",
    "FencedError",
    "InconsistentAssignmentError",
    "RingleaderError",
]


class ErrorCode(IntEnum):
    """The subset of Kafka protocol error codes the group protocol produces."""

    NONE = 0
    UNKNOWN_SERVER_ERROR = -1
    REQUEST_TIMED_OUT = 7
    COORDINATOR_LOAD_IN_PROGRESS = 14
    COORDINATOR_NOT_AVAILABLE = 15
    NOT_COORDINATOR = 16
    ILLEGAL_GENERATION = 22
    INCONSISTENT_GROUP_PROTOCOL = 23
    INVALID_GROUP_ID = 24
    UNKNOWN_MEMBER_ID = 25
    INVALID_SESSION_TIMEOUT = 26
    REBALANCE_IN_PROGRESS = 27
    GROUP_AUTHORIZATION_FAILED = 30
    UNSUPPORTED_VERSION = 35
    MEMBER_ID_REQUIRED = 79
    GROUP_MAX_SIZE_REACHED = 81
    FENCED_INSTANCE_ID = 82

    @classmethod
    def of(cls, code: int) -> ErrorCode:
        """Map a wire code to the enum; unknown codes become UNKNOWN_SERVER_ERROR."""
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN_SERVER_ERROR


# Codes after which the member must find the coordinator again.
COORDINATOR_MOVED = frozenset(
    {
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.REQUEST_TIMED_OUT,
    }
)


class CoordinatorError(RingleaderError):
    """A group-protocol request failed with a broker error code."""

    def __init__(self, api: str, code: ErrorCode, detail: str = "") -> None:
        self.api = api
        self.code = code
        self.retriable = code in COORDINATOR_MOVED or code in {
            ErrorCode.REBALANCE_IN_PROGRESS,
            ErrorCode.UNKNOWN_MEMBER_ID,
            ErrorCode.ILLEGAL_GENERATION,
            ErrorCode.MEMBER_ID_REQUIRED,
        }
        msg = f"{api} failed: {code.name} ({int(code)})"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class FencedError(RingleaderError):
    """This member lost its membership (session lapsed, or fenced by the broker)."""

    retriable = True


class InconsistentAssignmentError(RingleaderError):
    """A 2PC generation's commit is missing parts or its digest does not match."""
