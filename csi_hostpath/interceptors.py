"""The gRPC edge: every exception a handler raises becomes a status code here, and nowhere
else. Requests are never logged (they carry secrets); only the method, code and message."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from csi_hostpath.errors import CsiError

__all__ = ["ErrorInterceptor", "status_for"]

log = logging.getLogger("stowage.csi")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, CsiError):
        return grpc.StatusCode[exc.code], str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return grpc.StatusCode.INTERNAL, f"I/O error: {exc}"
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def _wrap(method: str, fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        start = time.monotonic()
        try:
            return fn(request, context)
        except Exception as exc:
            code, message = status_for(exc)
            unexpected = not isinstance(exc, CsiError) or code == grpc.StatusCode.INTERNAL
            log.log(
                logging.ERROR if unexpected else logging.INFO,
                "rpc failed",
                extra={"rpc": method, "code": code.name, "error": message},
                exc_info=unexpected,
            )
            context.abort(code, message)
        finally:
            log.debug("rpc", extra={"rpc": method, "ms": round(1000 * (time.monotonic() - start))})

    return handler


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _wrap(handler_call_details.method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
