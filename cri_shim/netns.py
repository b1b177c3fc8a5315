"""Pod namespaces: created, pinned and removed here, and nowhere else.

Design note: a pod's network, IPC and UTS namespaces are created by a short-lived ``unshare``
child that bind-mounts each new namespace onto a file under ``<ns_dir>/<pod id>/`` and sets the
pod's hostname on its way out (``unshare --net=FILE --ipc=FILE --uts=FILE hostname NAME``). No
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
    ns_dir: str, pod_id: str, *, net: bool, ipc: bool, uts: bool, hostname: str
) -> PodNamespaces:
    _ensure_private_dir(ns_dir)
    pod_dir = os.path.join(ns_dir, pod_id)
    os.makedirs(pod_dir, mode=0o700, exist_ok=True)
    paths = {
        kind: os.path.join(pod_dir, kind)
        for kind, wanted in (("net", net), ("ipc", ipc), ("uts", uts))
        if wanted
    }
    if not paths:
        return PodNamespaces(None, None, None)
    args = ["unshare"]
    for kind, path in paths.items():
        open(path, "w").close()
        args.append(f"--{kind}={path}")
    # Only a private UTS namespace may get the pod's hostname.
    args += ["hostname", hostname] if uts else ["true"]
    res = subprocess.run(args, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        unpin_namespaces(ns_dir, pod_id)
        raise NamespaceError(f"creating pod namespaces: {res.stderr.strip()}")
    return PodNamespaces(paths.get("net"), paths.get("ipc"), paths.get("uts"))


def unpin_namespaces(ns_dir: str, pod_id: str) -> None:
    pod_dir = os.path.join(ns_dir, pod_id)
    if not os.path.isdir(pod_dir):
        return
    for kind in ("net", "ipc", "uts"):
        path = os.path.join(pod_dir, kind)
        if os.path.exists(path):
            subprocess.run(["umount", "-l", path], capture_output=True, check=False)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(pod_dir)
