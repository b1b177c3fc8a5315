"""Pod namespaces: created, pinned and removed here, and nowhere else.

Design note: a pod's network, IPC, UTS (and, when asked, user) namespaces are created by one
short-lived helper, ``stowage-pause --setup-pod``: its child unshares them (the user namespace
first, so that it owns the rest), sets the hostname and brings loopback up from inside; the
helper itself, still in the host's namespaces, writes the user namespace's id maps, bind-mounts
each namespace onto a file under ``<ns_dir>/<pod id>/`` and mounts the pod's /dev/shm. No
thread of the daemon ever enters a namespace (setns would move a whole pool thread). The
namespaces then live as long as their bind mounts, with no infra process to start, watch or
pay memory for; containers join them by path. The directory holding the pins is a private
mount, because the kernel refuses to bind a namespace file below a shared mount.
Removing unmounts each pin (lazily, so a process still inside keeps it alive) and deletes the
files; it is idempotent.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass

__all__ = ["IdMap", "NamespaceError", "PodNamespaces", "pin_namespaces", "unpin_namespaces"]


class NamespaceError(Exception):
    pass


@dataclass(frozen=True)
class PodNamespaces:
    net: str | None
    ipc: str | None
    uts: str | None
    user: str | None = None


@dataclass(frozen=True)
class IdMap:
    """One line of a user namespace's uid_map or gid_map."""

    container_id: int
    host_id: int
    size: int

    def line(self) -> str:
        return f"{self.container_id} {self.host_id} {self.size}"


def _ensure_private_dir(ns_dir: str) -> None:
    os.makedirs(ns_dir, mode=0o700, exist_ok=True)
    with open("/proc/self/mountinfo") as f:
        mounted = any(line.split()[4] == ns_dir for line in f)
    if not mounted:
        subprocess.run(["mount", "--bind", ns_dir, ns_dir], check=True, capture_output=True)
    subprocess.run(["mount", "--make-private", ns_dir], check=True, capture_output=True)


def pin_namespaces(
    ns_dir: str,
    pod_id: str,
    *,
    net: bool,
    ipc: bool,
    uts: bool,
    hostname: str,
    helper: str,
    shm: str | None = None,
    shm_size: int = 64 << 20,
    userns: tuple[IdMap, IdMap] | None = None,
) -> PodNamespaces:
    """Creates the pod's namespaces and does its one-time set-up in one helper process
    (``stowage-pause --setup-pod``): hostname, loopback up, /dev/shm. With ``userns`` (uid and
    gid maps) the pod gets its own user namespace, which owns the others."""
    _ensure_private_dir(ns_dir)
    pod_dir = os.path.join(ns_dir, pod_id)
    os.makedirs(pod_dir, mode=0o700, exist_ok=True)
    wanted = (("user", userns is not None), ("net", net), ("ipc", ipc), ("uts", uts))
    paths = {kind: os.path.join(pod_dir, kind) for kind, want in wanted if want}
    if not paths and shm is None:
        return PodNamespaces(None, None, None)
    args = [helper, "--setup-pod"]
    for kind, path in paths.items():
        open(path, "w").close()
        args += [f"--{kind}", path]
    if userns is not None:
        args += ["--uid-map", userns[0].line(), "--gid-map", userns[1].line()]
    if uts:  # only a private UTS namespace may get the pod's hostname
        args += ["--hostname", hostname]
    if net:
        args.append("--lo")
    if shm is not None:
        args += ["--shm", shm, "--shm-size", str(shm_size)]
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        unpin_namespaces(ns_dir, pod_id)
        raise NamespaceError(f"creating pod namespaces: {res.stderr.strip()}")
    return PodNamespaces(paths.get("net"), paths.get("ipc"), paths.get("uts"), paths.get("user"))


def unpin_namespaces(ns_dir: str, pod_id: str) -> None:
    pod_dir = os.path.join(ns_dir, pod_id)
    if not os.path.isdir(pod_dir):
        return
    pins = [
        p for p in (os.path.join(pod_dir, k) for k in ("net", "ipc", "uts")) if os.path.exists(p)
    ]
    if pins:
        # One umount for all pins; lazily, so a process still inside keeps its namespace.
        subprocess.run(["umount", "-l", *pins], capture_output=True, check=False)
        for path in pins:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(pod_dir)
