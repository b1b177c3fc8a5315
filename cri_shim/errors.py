"""Translation of the library's exceptions to gRPC status codes: the only place that does it."""

from __future__ import annotations

import errno

import grpc

from images.errors import (
    BlobMismatchError,
    ImageError,
    ImageInUseError,
    ImageNotFoundError,
    InvalidReferenceError,
    LayerError,
    ManifestError,
    RegistryAuthError,
    RegistryUnavailableError,
)

__all__ = ["CriError", "status_for"]


class CriError(Exception):
    """An error a handler raises with its gRPC code already decided (bad request fields)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# Ordered: the first class an exception is an instance of decides its code.
_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidReferenceError, grpc.StatusCode.INVALID_ARGUMENT),
    (ImageNotFoundError, grpc.StatusCode.NOT_FOUND),
    (ImageInUseError, grpc.StatusCode.FAILED_PRECONDITION),
    (RegistryUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (RegistryAuthError, grpc.StatusCode.PERMISSION_DENIED),
    (BlobMismatchError, grpc.StatusCode.DATA_LOSS),
    (ManifestError, grpc.StatusCode.FAILED_PRECONDITION),
    (LayerError, grpc.StatusCode.FAILED_PRECONDITION),
    (ImageError, grpc.StatusCode.UNKNOWN),
    # The generated servicer base raises this for RPCs we do not serve.
    (NotImplementedError, grpc.StatusCode.UNIMPLEMENTED),
    (OSError, grpc.StatusCode.INTERNAL),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, CriError):
        return exc.code, str(exc)
    cause: BaseException | None = exc
    while cause is not None:  # a full disk may surface wrapped in a library error
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, f"no space left on device: {exc}"
        cause = cause.__cause__ or cause.__context__
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code, str(exc) or cls.__name__
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
