"""Hiding the kernel's cgroup-attach grace period behind runc's start-up.

Moving a process into a cgroup (a write to ``cgroup.procs``, which ``runc create`` and
``runc exec`` do for every container and exec) takes the kernel's global threadgroup rwsem for
writing. Unless the cgroup root is mounted with ``favordynmods``, entering that write side
waits for a full RCU grace period (6-16 ms on our test machine), *except* when another attach
happened within about the last grace period: then it is immediate. runc's own start-up (the
Go runtime, reading the bundle, ``runc init``) takes roughly as long as the grace period
before it attaches.

So when a container's launch begins (and before each exec, and before a shared-PID pod's
infra process joins the pod's cgroup), a background thread writes the daemon's own pid into
the cgroup it is already in: a move to the same cgroup, which changes nothing but makes the
kernel run the grace period now, in parallel with our own work and runc's start-up, instead
of when runc reaches its attach. Measured on the test machine (the pod benchmark's loop, 30
pods, A/B in one sitting): StartContainer's median went from 37-40 ms to 24-29 ms. Every
failure (no cgroupfs, a read-only one, a cgroup we may not write) is ignored: this is only
ever an optimisation, never needed for correctness.
"""

from __future__ import annotations

import os
import threading

__all__ = ["AttachWarmer", "procs_file"]


def procs_file(proc_self_cgroup: str, mount_root: str = "/sys/fs/cgroup") -> str | None:
    """The ``cgroup.procs`` of the cgroup a process is in, from its ``/proc/<pid>/cgroup``
    text (pure). A v1 hierarchy is preferred when there is one (it is where runc attaches on a
    v1 or hybrid host); on a v2-only host, the unified one."""
    unified = None
    for line in proc_self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier_id, controllers, path = parts
        if hier_id == "0" and controllers == "":
            unified = path
            continue
        for controller in controllers.split(","):
            if controller and not controller.startswith("name="):
                return os.path.join(mount_root, controller, path.lstrip("/"), "cgroup.procs")
    if unified is None:
        return None
    return os.path.join(mount_root, unified.lstrip("/"), "cgroup.procs")


class AttachWarmer:
    """One long-lived thread does the writes, so a warm-up costs the caller only an event:
    starting a thread per call would add its start-up handshake to CreateContainer."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        try:
            with open(f"/proc/{self.pid}/cgroup") as f:
                self.path = procs_file(f.read())
        except OSError:
            self.path = None
        self.last_error: OSError | None = None
        self.writes = 0
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Asks for a warm-up and returns at once. Requests made while one is in flight fold
        into the next one."""
        if self.path is None:
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._stop = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run, args=(self._stop,), name="cgroup-warm", daemon=True
                    )
                    self._thread.start()
        self._wanted.set()

    def close(self) -> None:
        """Stops the thread (after a write in flight); a later ``warm`` starts a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._wanted.set()
        if thread is not None:
            thread.join()

    def _run(self, stop: threading.Event) -> None:
        while True:
            self._wanted.wait()
            if stop.is_set():
                return
            self._wanted.clear()
            self._write()

    def _write(self) -> None:
        try:
            fd = os.open(str(self.path), os.O_WRONLY)
            try:
                os.write(fd, str(self.pid).encode())
            finally:
                os.close(fd)
            self.last_error = None
        except OSError as exc:
            self.last_error = exc
        self.writes += 1
