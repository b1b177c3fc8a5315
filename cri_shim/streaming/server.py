"""The streaming HTTP server: the URLs that Exec, Attach and PortForward return lead here.

One thread per connection (a stream lives as long as the command, so a pool would only cap
how many execs can run). A connection sends one HTTP request, ``/exec/<token>``,
``/attach/<token>`` or ``/portforward/<token>``, asking to upgrade to SPDY/3.1 or WebSocket;
the token is redeemed (once) for the request the gRPC call validated, and the connection then
carries that one session. The server listens on loopback only: the kubelet (or crictl) on the
same node is its client, and the token is the only credential, as in the kubelet's own
streaming server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from typing import Protocol

from cri_shim.streaming import handshake as hs
from cri_shim.streaming.conn import (
    RemoteStreams,
    SocketTransport,
    SpdyConnection,
    StreamSetupError,
    WebSocketConnection,
    WebSocketTunnel,
    spdy_remote_streams,
    websocket_remote_streams,
)
from cri_shim.streaming.remotecommand import (
    PORTFORWARD_PROTOCOL,
    PORTFORWARD_WEBSOCKET_PROTOCOL,
    SPDY_PROTOCOLS,
    WEBSOCKET_PROTOCOLS,
    Outcome,
    error_stream_message,
)
from cri_shim.streaming.targets import AttachTarget, ExecTarget, PortForwardTarget, Target
from cri_shim.streaming.tokens import TokenCache

__all__ = ["Backend", "StreamingServer"]

log = logging.getLogger("stowage.cri.streaming")

HEAD_TIMEOUT = 30.0
_KINDS = {"exec": ExecTarget, "attach": AttachTarget, "portforward": PortForwardTarget}


class Backend(Protocol):
    """What runs a session once its streams are up (the runtime, or a fake in tests)."""

    def exec(
        self, target: ExecTarget, streams: RemoteStreams, peer_gone: threading.Event
    ) -> Outcome: ...

    def attach(
        self, target: AttachTarget, streams: RemoteStreams, peer_gone: threading.Event
    ) -> Outcome: ...

    def port_forward(self, target: PortForwardTarget, conn: SpdyConnection) -> None: ...


def _kind_of(target: Target) -> str:
    for kind, cls in _KINDS.items():
        if isinstance(target, cls):
            return kind
    raise TypeError(type(target).__name__)


class StreamingServer:
    def __init__(self, address: str, port: int, backend: Backend, token_ttl: float = 60.0) -> None:
        ip = ipaddress.ip_address(address)
        if not ip.is_loopback:
            raise ValueError(f"the streaming server listens on loopback only, not {address}")
        self.backend = backend
        self.tokens: TokenCache[Target] = TokenCache(ttl=token_ttl)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((address, port))
        self._sock.listen(128)
        host = f"[{address}]" if ip.version == 6 else address
        self.base_url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="streaming", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("streaming server listening", extra={"url": self.base_url})

    def stop(self) -> None:
        """Stops accepting; sessions already running finish on their own."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if self._thread.is_alive():
            self._thread.join(5)

    def url(self, target: Target) -> str:
        token = self.tokens.put(target, time.monotonic())
        return f"{self.base_url}/{_kind_of(target)}/{token}"

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self._sock.accept()
            except OSError:
                if self._stopped.is_set():
                    return
                time.sleep(0.05)
                continue
            threading.Thread(
                target=self._serve, args=(sock,), name="streaming-conn", daemon=True
            ).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self._serve_request(sock)
        except Exception:
            log.exception("streaming connection failed")
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _read_head(self, sock: socket.socket) -> tuple[hs.Request, bytes]:
        sock.settimeout(HEAD_TIMEOUT)
        buf = b""
        while True:
            split = hs.split_head(buf)
            if split is not None:
                head, rest = split
                return hs.parse_head(head), rest
            chunk = sock.recv(65536)
            if not chunk:
                raise hs.BadRequestError(400, "connection closed before the request ended")
            buf += chunk

    def _serve_request(self, sock: socket.socket) -> None:
        try:
            req, rest = self._read_head(sock)
            target, up = self._route(req)
        except hs.BadRequestError as exc:
            log.info("streaming request refused", extra={"status": exc.status, "error": str(exc)})
            with contextlib.suppress(OSError):
                sock.sendall(hs.error_response(exc.status, str(exc)))
            return
        except OSError:
            return
        sock.sendall(hs.upgrade_response(up))
        transport = SocketTransport(sock, rest)
        log.info(
            "streaming session",
            extra={
                "kind": _kind_of(target),
                "transport": up.transport.value,
                "protocol": up.protocol,
            },
        )
        if isinstance(target, PortForwardTarget):
            self._port_forward(target, transport, up)
        else:
            self._remote_command(target, transport, up)

    def _route(self, req: hs.Request) -> tuple[Target, hs.Upgrade]:
        parts = req.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in _KINDS:
            raise hs.BadRequestError(404, "not found")
        kind, token = parts
        target = self.tokens.consume(token, time.monotonic())
        if target is None or not isinstance(target, _KINDS[kind]):
            raise hs.BadRequestError(404, "unknown or expired streaming token")
        if isinstance(target, PortForwardTarget):
            up = hs.plan_upgrade(req, (PORTFORWARD_PROTOCOL,), (PORTFORWARD_WEBSOCKET_PROTOCOL,))
        else:
            up = hs.plan_upgrade(req, SPDY_PROTOCOLS, WEBSOCKET_PROTOCOLS)
        return target, up

    def _remote_command(
        self, target: ExecTarget | AttachTarget, transport: SocketTransport, up: hs.Upgrade
    ) -> None:
        if up.transport is hs.Transport.SPDY:
            conn = SpdyConnection(transport)
            conn.start()
            gone = conn.closed
            try:
                streams = spdy_remote_streams(conn, target.opts, up.protocol)
            except StreamSetupError as exc:
                log.info("streaming session aborted", extra={"error": str(exc)})
                conn.close()
                return
        else:
            wconn = WebSocketConnection(transport)
            gone = wconn.closed
            streams = websocket_remote_streams(wconn, target.opts, up.protocol)
        cmd: list[str] | None = None
        try:
            if isinstance(target, ExecTarget):
                cmd = list(target.cmd)
                outcome = self.backend.exec(target, streams, gone)
            else:
                outcome = self.backend.attach(target, streams, gone)
        except Exception as exc:
            log.exception("streaming session failed")
            outcome = Outcome(error=f"{type(exc).__name__}: {exc}")
        streams.finish(error_stream_message(outcome, up.protocol, cmd))

    def _port_forward(
        self, target: PortForwardTarget, transport: SocketTransport, up: hs.Upgrade
    ) -> None:
        if up.transport is hs.Transport.SPDY:
            conn = SpdyConnection(transport)
        else:
            conn = SpdyConnection(WebSocketTunnel(WebSocketConnection(transport)))
        conn.start()
        try:
            self.backend.port_forward(target, conn)
        finally:
            conn.close()
