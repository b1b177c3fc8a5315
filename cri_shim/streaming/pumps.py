"""Byte pumps between the client's streams and file descriptors (pipes, a pty master, a
socket): the small pieces of I/O that exec, attach and port-forward share."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import selectors
import struct
import termios
import threading
import time
from collections.abc import Callable

from cri_shim.streaming.conn import Inbound, Outbound
from cri_shim.streaming.remotecommand import ResizeDecoder, TerminalSize

__all__ = [
    "copy_in",
    "drain_outputs",
    "set_winsize",
    "start_thread",
    "watch_resizes",
    "write_all",
]


def start_thread(name: str, fn: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=fn, name=name, daemon=True)
    t.start()
    return t


def copy_in(src: Inbound, write: Callable[[bytes], None], on_eof: Callable[[], None]) -> None:
    """Client bytes into ``write`` until the client ends the stream (then ``on_eof``); a write
    that fails (the process is gone) stops the copy but keeps draining the stream."""
    broken = False
    while True:
        data = src.read()
        if not data:
            break
        if broken:
            continue
        try:
            write(data)
        except OSError:
            broken = True
    with contextlib.suppress(OSError):
        on_eof()


def write_all(fd: int, data: bytes, timeout: float = 60.0) -> None:
    """Writes all of ``data``, also to a non-blocking fd (waiting while it is full)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            if not select.select([], [fd], [], timeout)[1]:
                raise TimeoutError("the process does not read its input") from None
            continue
        view = view[n:]


def drain_outputs(
    outputs: dict[int, Outbound | None], exited: threading.Event, grace: float = 2.0
) -> None:
    """Copies each fd to its stream until EOF (or EIO, a pty whose last user left). Once
    ``exited`` is set, waits at most ``grace`` more seconds: a background child that inherited
    the pipe must not keep the session open. A stream of None discards that fd's bytes; a
    stream whose client went away is discarded from then on, never blocking the process."""
    sel = selectors.DefaultSelector()
    for fd in outputs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    sinks = dict(outputs)
    deadline: float | None = None
    try:
        while sinks:
            if deadline is None and exited.is_set():
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                return
            for key, _ in sel.select(0.1):
                fd = int(key.fd)
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    sel.unregister(fd)
                    sinks.pop(fd, None)
                    continue
                sink = sinks.get(fd)
                if sink is not None:
                    try:
                        sink.write(data)
                    except OSError:
                        sinks[fd] = None
    finally:
        sel.close()


def set_winsize(fd: int, size: TerminalSize) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))


def watch_resizes(src: Inbound, apply: Callable[[TerminalSize], None]) -> None:
    decoder = ResizeDecoder()
    while True:
        data = src.read()
        if not data:
            return
        for size in decoder.feed(data):
            apply(size)
