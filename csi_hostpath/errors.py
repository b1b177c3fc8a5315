"""The package's exception tree. Each class carries the CSI spec's gRPC code by name, so the
core never imports grpc; the one edge that translates them is ``interceptors.py``."""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "Aborted",
    "AlreadyExists",
    "CsiError",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "ResourceExhausted",
    "Unimplemented",
]


class CsiError(Exception):
    """Base of every error the driver raises on purpose; ``code`` names a ``grpc.StatusCode``."""

    code: ClassVar[str] = "INTERNAL"


class InvalidArgument(CsiError):
    code = "INVALID_ARGUMENT"


class NotFound(CsiError):
    code = "NOT_FOUND"


class AlreadyExists(CsiError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(CsiError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(CsiError):
    code = "RESOURCE_EXHAUSTED"


class OutOfRange(CsiError):
    code = "OUT_OF_RANGE"


class Aborted(CsiError):
    code = "ABORTED"


class Unimplemented(CsiError):
    code = "UNIMPLEMENTED"


class Internal(CsiError):
    """A backend step failed (mount, losetup, tar): the request may be retried."""

    code = "INTERNAL"
