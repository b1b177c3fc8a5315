"""Attach over a streaming connection, through conmon's attach socket.

conmon (started with ``--full-attach``) listens on ``<bundle>/attach``, a SOCK_SEQPACKET unix
socket. Each packet it sends is one chunk of the container's output, led by a byte that names
the pipe (2 stdout, 3 stderr; a tty container's output is all stdout); each packet we send is
written to the container's stdin. Our half-close (SHUT_WR) is the end of stdin: conmon then
closes the container's stdin unless the container was created to keep it open
(``stdin_once`` false). conmon closes the socket when the container exits, which ends the
attach. Resizes go to conmon's control fifo ``<bundle>/ctl`` as ``"1 <height> <width>\\n"``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

from cri_shim.streaming.conn import RemoteStreams
from cri_shim.streaming.pumps import copy_in, start_thread, watch_resizes
from cri_shim.streaming.remotecommand import Outcome, TerminalSize

__all__ = ["attach", "demux_packet", "resize_message"]

STDOUT_ID = 2
STDERR_ID = 3
# conmon reads client packets into a buffer of this size; a larger packet would be cut short.
MAX_PACKET = 8192


def demux_packet(packet: bytes) -> tuple[int, bytes]:
    """(pipe id, payload) of a packet from conmon (pure)."""
    return (packet[0], packet[1:]) if packet else (0, b"")


def resize_message(size: TerminalSize) -> bytes:
    return f"1 {size.height} {size.width}\n".encode()


def connect(bundle: str) -> socket.socket:
    # Through a directory handle: the socket's full path may exceed a unix address's 108 bytes.
    dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(f"/proc/self/fd/{dfd}/attach")
        except OSError:
            sock.close()
            raise
        return sock
    finally:
        os.close(dfd)


def attach(bundle: str, streams: RemoteStreams, peer_gone: threading.Event) -> Outcome:
    try:
        sock = connect(bundle)
    except OSError as exc:
        return Outcome(error=f"cannot attach to the container: {exc}")
    with sock:
        if streams.stdin is not None:
            stdin = streams.stdin
            start_thread(
                "attach-stdin",
                lambda: copy_in(
                    stdin, lambda d: _send(sock, d), lambda: sock.shutdown(socket.SHUT_WR)
                ),
            )
        if streams.resize is not None:
            ctl = os.path.join(bundle, "ctl")
            resize = streams.resize
            start_thread("attach-resize", lambda: watch_resizes(resize, lambda s: _resize(ctl, s)))

        def hang_up() -> None:
            # The client is gone: shutting the socket down wakes the receive loop below.
            peer_gone.wait()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        start_thread("attach-peer", hang_up)
        sinks = {STDOUT_ID: streams.stdout, STDERR_ID: streams.stderr}
        while True:
            try:
                packet = sock.recv(65536)
            except OSError:
                break
            if not packet:
                break
            pipe, payload = demux_packet(packet)
            sink = sinks.get(pipe)
            if sink is not None and payload:
                try:
                    sink.write(payload)
                except OSError:
                    sinks[pipe] = None
    return Outcome()


def _send(sock: socket.socket, data: bytes) -> None:
    for i in range(0, len(data), MAX_PACKET):
        sock.send(data[i : i + MAX_PACKET])


def _resize(ctl: str, size: TerminalSize) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, resize_message(size))
        finally:
            os.close(fd)
