"""``python -m cni_bridge.agent [--socket PATH] [--workers N]``: the optional resident
helper that makes each CNI call about as cheap as starting the interpreter.

A plugin process that does the work itself spends most of its life importing (json,
dataclasses, ipaddress, our modules: ~25 ms of a ~40 ms call). The agent pays that once: it
imports everything, listens on a root-only unix socket, and forks ``workers`` processes that
each serve requests one at a time, running exactly the code a plugin process would
(``cni_bridge.main.run_bridge`` with the caller's environment and stdin) and sending back
its stdout and exit code (the wire format is described in ``cni_bridge.entry``).

Workers are forked ahead and live for many requests: measured, a worker forked per request
spent ~2 ms more on every call (the fork, then copy-on-write faults all over the freshly
forked heap) than a warm one. A worker is single-threaded like a plugin process, so it may
enter namespaces the same way (``cni_bridge.netlink``); the supervisor never does. Since a
worker outlives its requests, it checks before each one that it is still in the agent's
network namespace and single-threaded, and it leaves (the supervisor forks a fresh one)
after any unexpected error or ``MAX_REQUESTS`` requests; a request that never completes
times out after ``TIMEOUT`` seconds. A worker gets SIGTERM when the supervisor dies (it
finishes the request at hand first), so none is left waiting on an unreachable socket.

The agent declines (and the plugin then does the work itself) when the caller is in another
network namespace than the agent, is not root, or speaks another protocol version. It
keeps no state: killing it (or a worker) at any moment loses nothing, the next call simply
runs in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import signal
import socket
import struct
import sys
import time
from typing import NoReturn

# Imported for their side effect: loaded once here, inherited by every forked worker.
from cni_bridge import bridge, config, delegate, netlink, nft, record  # noqa: F401
from cni_bridge import main as edge
from cni_bridge.entry import AGENT_SOCKET, PROTOCOL
from cni_bridge.ipam import hostlocal  # noqa: F401

__all__ = ["handle", "main", "serve"]

_DECLINE = b"\x01"
WORKERS = max(4, 2 * (os.cpu_count() or 1))
MAX_REQUESTS = 1000
TIMEOUT = 60.0
_CRED = struct.Struct("3i")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _read_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("short request")
        buf += chunk
    return bytes(buf)


def parse_request(head: bytes) -> tuple[str, tuple[int, int], dict[str, str]] | None:
    """(plugin, caller's netns, environment) from a request head; None for another
    protocol version."""
    fields = head.split(b"\0")
    if len(fields) < 4 or fields[0] != PROTOCOL:
        return None
    env = {}
    for item in fields[4:]:
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return fields[1].decode(), (int(fields[2]), int(fields[3])), env


def handle(conn: socket.socket, own_netns: tuple[int, int]) -> None:
    """Serve one request on ``conn``."""
    _pid, uid, _gid = _CRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    head = _read_exact(conn, int.from_bytes(_read_exact(conn, 4), "big"))
    stdin = _read_exact(conn, int.from_bytes(_read_exact(conn, 4), "big"))
    req = parse_request(head)
    if uid != 0 or req is None or req[1] != own_netns:
        conn.sendall(_DECLINE)
        return
    plugin, _netns, env = req
    run = edge.run_bridge if plugin == "bridge" else edge.run_hostlocal
    out, code = run(env, stdin)
    conn.sendall(b"\x00" + bytes((code & 0xFF,)) + out)


def serve(path: str, workers: int = WORKERS) -> None:
    netlink.preload()
    own_netns = netlink.netns_inode()
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o177)  # the socket is born 0600: root only
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(128)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Objects that exist now are never collected: a worker's collector then leaves the
    # inherited heap alone instead of copying it page by page.
    gc.freeze()
    supervisor = os.getpid()
    pids: set[int] = set()
    try:
        while True:
            while len(pids) < workers:
                pid = os.fork()
                if pid == 0:
                    _worker(listener, own_netns, supervisor)
                pids.add(pid)
            pid, status = os.wait()
            pids.discard(pid)
            if status:
                time.sleep(0.1)  # a worker that keeps failing must not make this spin
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _fit(own_netns: tuple[int, int]) -> bool:
    """Whether this worker may serve another request: a request must never find it in a
    namespace a previous one entered, or with a thread a previous one left behind."""
    return netlink.netns_inode() == own_netns and len(os.listdir("/proc/self/task")) == 1


def _worker(listener: socket.socket, own_netns: tuple[int, int], supervisor: int) -> NoReturn:
    busy = [False]
    stop = [False]

    def on_term(*_: object) -> None:
        # Idle: leave now. Busy: finish the request first (a request cut short leaves
        # half an ADD for the runtime's DEL to clean up), then leave.
        if not busy[0]:
            os._exit(0)
        stop[0] = True

    code = 0
    try:
        signal.signal(signal.SIGTERM, on_term)
        # An orphaned worker would wait forever on a socket nobody can reach any more:
        # the supervisor's death is a SIGTERM for its workers.
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor:
            os._exit(0)
        for _ in range(MAX_REQUESTS):
            if stop[0] or not _fit(own_netns):
                break
            conn, _ = listener.accept()
            busy[0] = True
            with conn:
                conn.settimeout(TIMEOUT)
                handle(conn, own_netns)
            busy[0] = False
    except BaseException:
        code = 1  # the plugin sees a short reply and runs the call itself
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cni_bridge.agent", description=__doc__)
    p.add_argument("--socket", default=AGENT_SOCKET)
    p.add_argument("--workers", type=int, default=WORKERS)
    args = p.parse_args(argv)
    serve(args.socket, max(1, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
