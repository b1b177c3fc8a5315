"""The gRPC edge: every handler's exception becomes a status code here, and every call is logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from cri_shim.errors import status_for

__all__ = ["ErrorInterceptor"]

log = logging.getLogger("stowage.cri")


def _wrap_unary(method: str, fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        start = time.monotonic()
        try:
            return fn(request, context)
        except Exception as exc:
            code, message = status_for(exc)
            level = logging.ERROR if code == grpc.StatusCode.INTERNAL else logging.INFO
            log.log(
                level,
                "rpc failed",
                extra={"rpc": method, "code": code.name, "error": message},
                exc_info=level == logging.ERROR,
            )
            context.abort(code, message)
        finally:
            ms = round(1000 * (time.monotonic() - start), 1)
            log.debug("rpc", extra={"rpc": method, "ms": ms})

    return handler


def _wrap_stream(method: str, fn: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            yield from fn(request, context)
        except Exception as exc:
            code, message = status_for(exc)
            log.info("rpc failed", extra={"rpc": method, "code": code.name, "error": message})
            context.abort(code, message)

    return handler


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
