"""Pod namespaces: created, pinned and removed here, and nowhere else.

Design note: a pod's network, IPC and UTS namespaces are created by a short-lived ``unshare``
child that bind-mounts each new namespace onto a file under ``<ns_dir>/<pod id>/``; the program
it runs inside them (``stowage-pause --setup-pod``) sets the hostname, brings loopback up and
mounts the pod's /dev/shm, all in that one child. No
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

__all__ = ["NamespaceError", "PodNamespaces", "pin_namespaces", "unpin_namespaces"]


class NamespaceError(Exception):
    pass


@dataclass(frozen=True)
class PodNamespaces:
    net: str | None
    ipc: str | None
    uts: str | None


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
) -> PodNamespaces:
    """Creates the pod's namespaces and, in the same child, does the pod's one-time set-up:
    hostname, loopback up, and the /dev/shm tmpfs (``stowage-pause --setup-pod``)."""
    _ensure_private_dir(ns_dir)
    pod_dir = os.path.join(ns_dir, pod_id)
    os.makedirs(pod_dir, mode=0o700, exist_ok=True)
    paths = {
        kind: os.path.join(pod_dir, kind)
        for kind, wanted in (("net", net), ("ipc", ipc), ("uts", uts))
        if wanted
    }
    if not paths and shm is None:
        return PodNamespaces(None, None, None)
    args = ["unshare"]
    for kind, path in paths.items():
        open(path, "w").close()
        args.append(f"--{kind}={path}")
    args += [helper, "--setup-pod"]
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
    return PodNamespaces(paths.get("net"), paths.get("ipc"), paths.get("uts"))


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
