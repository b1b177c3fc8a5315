"""``python -m cni_bridge.agent [--socket PATH]``: the optional resident helper that makes
each CNI call as cheap as a process start.

A plugin process spends most of its life importing (json, dataclasses, our modules: ~25 ms
of a ~40 ms call). The agent pays that once: it imports everything, listens on a root-only
unix socket, and serves each request from a forked child that runs exactly the code a
plugin process would (``cni_bridge.main.run_bridge`` with the caller's environment and
stdin) and sends back its stdout and exit code. The child is single-threaded like a plugin
process, so it may enter namespaces the same way; the agent itself never does.

The agent declines (and the plugin then does the work itself) when the caller is in another
network namespace than the agent, or is not root. It keeps no state: killing it at any
moment loses nothing, the next call simply runs in-process. Children are forked ahead of
the requests (``PREFORK`` of them wait in ``accept``) so no call waits for a fork.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import signal
import socket
import struct
import sys
from typing import NoReturn

# Imported for their side effect: loaded once here, inherited by every forked child.
from cni_bridge import bridge, config, delegate, netlink, nft, record  # noqa: F401
from cni_bridge import main as edge
from cni_bridge.entry import AGENT_SOCKET
from cni_bridge.ipam import hostlocal  # noqa: F401

__all__ = ["handle", "main", "serve"]

_DECLINE = b"\x01"
PREFORK = 4


def _read_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("short request")
        buf += chunk
    return bytes(buf)


def handle(conn: socket.socket, own_netns: tuple[int, int]) -> None:
    """Serve one request on ``conn`` (in the forked child)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    head = _read_exact(conn, int.from_bytes(_read_exact(conn, 4), "big"))
    plugin, dev, ino, env = ast.literal_eval(head.decode())
    stdin = _read_exact(conn, int.from_bytes(_read_exact(conn, 4), "big"))
    if uid != 0 or (dev, ino) != own_netns or not isinstance(env, dict):
        conn.sendall(_DECLINE)
        return
    run = edge.run_bridge if plugin == "bridge" else edge.run_hostlocal
    out, code = run(env, stdin)
    conn.sendall(b"\x00" + bytes((code & 0xFF,)) + out)


def serve(path: str) -> None:
    netlink.preload()
    own_netns = netlink.netns_inode()
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: root only
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(128)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    workers: set[int] = set()
    try:
        # Pre-forked: ``PREFORK`` children wait in accept(), each serves one request and
        # exits, and a new one is forked as each finishes, so no request waits for a fork.
        while True:
            while len(workers) < PREFORK:
                pid = os.fork()
                if pid == 0:
                    _worker(listener, own_netns)
                workers.add(pid)
            pid, _status = os.wait()
            workers.discard(pid)
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _worker(listener: socket.socket, own_netns: tuple[int, int]) -> NoReturn:
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        conn, _ = listener.accept()
        listener.close()
        try:
            handle(conn, own_netns)
        finally:
            conn.close()
    except BaseException:
        code = 1  # the plugin sees a short reply and runs the call itself
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cni_bridge.agent", description=__doc__)
    p.add_argument("--socket", default=AGENT_SOCKET)
    args = p.parse_args(argv)
    serve(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
