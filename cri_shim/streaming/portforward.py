"""Port forwarding over a SPDY connection (also when it is tunnelled through a WebSocket).

Per forwarded TCP connection the client opens two streams with the same ``requestID`` and
``port`` headers: ``error`` (which it half-closes at once) and ``data``. We connect to
``localhost:<port>`` inside the pod's network namespace and relay the data stream both ways;
a failure is written as text on the error stream. Both streams are half-closed when the
connection ends, which is what the client waits for.

Namespace rule: no daemon thread ever enters a pod's namespace. A short-lived helper does:
``nsenter --net=<pinned netns> python -c ...`` connects from inside and passes the connected
socket back to us over an inherited unix socket (SCM_RIGHTS). From then on the daemon relays
on a real socket of the pod's namespace with no process in between. Host-network pods are
dialled directly.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cri_shim.streaming.conn import SpdyConnection, SpdyStream

__all__ = ["DialError", "PairTracker", "dial_in_netns", "serve_port_forward"]

log = logging.getLogger("stowage.cri.streaming")

DIAL_TIMEOUT = 10.0

# Runs inside the pod's network namespace (python -I -S: no site, no environment). argv: the
# inherited socket's fd, the port. Tries IPv4 then IPv6 loopback, as "localhost" would.
_HELPER = """
import socket, sys
ch = socket.socket(fileno=int(sys.argv[1]))
port = int(sys.argv[2])
errors = []
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(float(sys.argv[3]))
        s.connect((host, port))
    except OSError as exc:
        errors.append(f"{host}: {exc.strerror or exc}")
        continue
    s.settimeout(None)
    socket.send_fds(ch, [b"ok"], [s.fileno()])
    sys.exit(0)
ch.sendall(("; ".join(errors)).encode())
"""


class DialError(Exception):
    pass


def dial_in_netns(netns: str | None, port: int, timeout: float = DIAL_TIMEOUT) -> socket.socket:
    """A TCP connection to localhost:``port`` in the network namespace ``netns`` (None: ours)."""
    if netns is None:
        errors = []
        for host in ("127.0.0.1", "::1"):
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
            except OSError as exc:
                errors.append(f"{host}: {exc.strerror or exc}")
                continue
            sock.settimeout(None)
            return sock
        raise DialError(f"connect to localhost:{port}: {'; '.join(errors)}")
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with parent:
        try:
            proc = subprocess.Popen(
                [
                    "nsenter",
                    f"--net={netns}",
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _HELPER,
                    str(child.fileno()),
                    str(port),
                    str(timeout),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        finally:
            child.close()
        parent.settimeout(timeout + 5)
        try:
            msg, fds, _, _ = socket.recv_fds(parent, 4096, 1)
        except OSError as exc:
            proc.kill()
            msg, fds = f"helper: {exc}".encode(), []
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    if fds:
        sock = socket.socket(fileno=fds[0])
        sock.settimeout(None)
        return sock
    why = msg.decode(errors="replace") or err.decode(errors="replace").strip()
    raise DialError(f"connect to localhost:{port} in {netns}: {why or 'helper failed'}")


@dataclass
class _Pair:
    port: str
    error: SpdyStream | None = None
    data: SpdyStream | None = None


class PairTracker:
    """Matches error and data streams by request id (pure bookkeeping). Clients older than the
    requestID header are matched as the kubelet does: the data stream's id is the error
    stream's plus two."""

    def __init__(self) -> None:
        self._pairs: dict[str, _Pair] = {}

    def add(self, s: SpdyStream) -> tuple[str, SpdyStream, SpdyStream] | None:
        """Files ``s``; returns (port, error, data) once its pair is complete."""
        kind = s.header("streamtype")
        rid = s.header("requestid")
        if rid is None:
            rid = str(s.id if kind == "error" else s.id - 2)
        pair = self._pairs.setdefault(rid, _Pair(port=s.header("port") or ""))
        if kind == "error" and pair.error is None:
            pair.error = s
        elif kind == "data" and pair.data is None:
            pair.data = s
        else:
            s.reset()
            return None
        if pair.error is not None and pair.data is not None:
            del self._pairs[rid]
            return pair.port, pair.error, pair.data
        return None


def serve_port_forward(conn: SpdyConnection, dial: Callable[[int], socket.socket]) -> None:
    """Serves the client's forwarding streams until it hangs up or sends GOAWAY."""
    pairs = PairTracker()
    while True:
        s = conn.accept()
        if s is None:
            return
        done = pairs.add(s)
        if done is not None:
            port, err, data = done
            threading.Thread(
                target=_forward, args=(port, err, data, dial), name="portforward", daemon=True
            ).start()


def _parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise DialError(f"invalid port {text!r}") from None
    if not 0 < port < 65536:
        raise DialError(f"invalid port {port}")
    return port


def _forward(
    port_text: str,
    err: SpdyStream,
    data: SpdyStream,
    dial: Callable[[int], socket.socket],
) -> None:
    try:
        sock = dial(_parse_port(port_text))
    except DialError as exc:
        log.info("port forward failed", extra={"port": port_text, "error": str(exc)})
        with contextlib.suppress(OSError):
            err.write(str(exc).encode())
        err.close()
        data.close()
        return
    with sock:
        upstream = threading.Thread(target=_client_to_target, args=(data, sock), daemon=True)
        upstream.start()
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            try:
                data.write(chunk)
            except OSError:
                break
        data.close()
        # The client resets the data stream once it saw our end; wait for that (or its own
        # end) before closing the socket under the other direction.
        upstream.join(30)
    err.close()


def _client_to_target(data: SpdyStream, sock: socket.socket) -> None:
    while True:
        chunk = data.read()
        if not chunk:
            break
        try:
            sock.sendall(chunk)
        except OSError:
            break
    if data.reset_by_peer or data.conn.closed.is_set():
        # The client abandoned the connection: wake the other direction too.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    else:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
