"""The mounts of a container spec: the kernel filesystems every container gets, the pod's files
(/etc/hosts, /etc/resolv.conf, /etc/hostname, /dev/shm), and the CRI's volume mounts.

A CRI mount on the same destination as one of ours replaces ours: the kubelet, for instance,
mounts its own managed /etc/hosts. Volume mounts are ordered parents first, so that a mount on
/data/logs is not hidden by a later mount on /data. SELinux relabelling is ignored (no policy on
the hosts we target).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cri_shim.spec.security import SpecError

__all__ = [
    "PROPAGATION_BIDIRECTIONAL",
    "PROPAGATION_HOST_TO_CONTAINER",
    "PROPAGATION_PRIVATE",
    "cri_mounts",
    "default_mounts",
    "merge_mounts",
    "pod_mounts",
    "rootfs_propagation",
]

# runtime.v1.MountPropagation values.
PROPAGATION_PRIVATE = 0
PROPAGATION_HOST_TO_CONTAINER = 1
PROPAGATION_BIDIRECTIONAL = 2

# A mount point, not a place we write temporary files (what ruff's S108 guards against).
_DEV_SHM = "/dev/shm"  # noqa: S108

_PROPAGATION_OPTION = {
    PROPAGATION_PRIVATE: "rprivate",
    PROPAGATION_HOST_TO_CONTAINER: "rslave",
    PROPAGATION_BIDIRECTIONAL: "rshared",
}


def default_mounts(*, privileged: bool) -> list[dict[str, Any]]:
    """Kernel filesystems of a container. /sys and the cgroup tree are read-only unless
    privileged: writing there changes the host, not the container."""
    ro = [] if privileged else ["ro"]
    return [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", *ro],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", *ro],
        },
    ]


def _bind(source: str, destination: str, *, readonly: bool) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind", "rprivate", "ro" if readonly else "rw"],
    }


def pod_mounts(
    *,
    hosts_path: str,
    resolv_path: str,
    hostname_path: str,
    shm_path: str | None,
    readonly: bool,
) -> list[dict[str, Any]]:
    """The pod's files, shared by its containers. They follow the root's read-only setting
    (a read-only container should not rewrite the pod's resolver), except /dev/shm, which is
    memory, not configuration. No shm path means host IPC: the host's /dev/shm."""
    mounts = [
        _bind(path, dest, readonly=readonly)
        for path, dest in (
            (hosts_path, "/etc/hosts"),
            (resolv_path, "/etc/resolv.conf"),
            (hostname_path, "/etc/hostname"),
        )
        if path
    ]
    shm = _bind(shm_path or _DEV_SHM, _DEV_SHM, readonly=False)
    shm["options"] = ["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"]
    mounts.append(shm)
    return mounts


def _clean_destination(path: str) -> str:
    if not path.startswith("/"):
        raise SpecError(f"mount container path {path!r} must be absolute")
    clean = posixpath.normpath(path)
    if clean.startswith("//"):  # normpath keeps a leading double slash (POSIX leaves it open)
        clean = "/" + clean.lstrip("/")
    if clean == "/":
        raise SpecError("cannot mount over the container's root")
    return clean


def _id_mappings(mappings: Iterable[Any]) -> list[dict[str, int]]:
    return [
        {"containerID": m.container_id, "hostID": m.host_id, "size": m.length} for m in mappings
    ]


def cri_mounts(
    mounts: Sequence[Any],
    *,
    resolve_host_path: Callable[[str], str] | None = None,
    image_volume_path: Callable[[Any], str] | None = None,
) -> list[dict[str, Any]]:
    """OCI bind mounts for CRI `Mount` messages, in request order.

    Host paths pass through `resolve_host_path` (the shell's realpath: a symlinked host path is
    mounted as its target and reported as such). Image volumes (`Mount.image`) need the shell to
    have mounted the image; `image_volume_path` returns where.
    """
    out: list[dict[str, Any]] = []
    for m in mounts:
        destination = _clean_destination(m.container_path)
        propagation = int(m.propagation)
        if propagation not in _PROPAGATION_OPTION:
            raise SpecError(f"mount {destination}: unknown propagation {propagation}")
        readonly = bool(m.readonly)
        image_ref = m.image.image if m.HasField("image") else ""
        if image_ref:
            if m.host_path:
                raise SpecError(f"mount {destination}: host_path and image are exclusive")
            if image_volume_path is None:
                raise SpecError(f"mount {destination}: image volumes are not supported")
            source = image_volume_path(m)
            readonly = True  # image volumes are read-only by definition
        else:
            if not m.host_path:
                raise SpecError(f"mount {destination}: host_path is empty")
            source = resolve_host_path(m.host_path) if resolve_host_path else m.host_path
        options = ["rbind", _PROPAGATION_OPTION[propagation], "ro" if readonly else "rw"]
        if m.recursive_read_only:
            # The CRI's own rules: recursive read-only only makes sense on a read-only, private
            # mount (a shared or slave mount would receive writable submounts later).
            if not m.readonly:
                raise SpecError(f"mount {destination}: recursive_read_only requires readonly")
            if propagation != PROPAGATION_PRIVATE:
                raise SpecError(
                    f"mount {destination}: recursive_read_only requires private propagation"
                )
            options.append("rro")
        entry: dict[str, Any] = {
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": options,
        }
        if m.uidMappings or m.gidMappings:
            entry["uidMappings"] = _id_mappings(m.uidMappings)
            entry["gidMappings"] = _id_mappings(m.gidMappings)
        out.append(entry)
    return out


def _depth(destination: str) -> int:
    return len([part for part in destination.split("/") if part])


def merge_mounts(
    defaults: Sequence[dict[str, Any]],
    pod: Sequence[dict[str, Any]],
    requested: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Ours first, then the request's sorted by depth (stable, so equal depths keep request
    order); a requested destination removes our mount there. Duplicate requested destinations
    are refused: which one the container would see depends on an accident of ordering."""
    seen: set[str] = set()
    for m in requested:
        if m["destination"] in seen:
            raise SpecError(f"duplicate mount destination {m['destination']}")
        seen.add(m["destination"])
    ours = [m for m in [*defaults, *pod] if m["destination"] not in seen]
    return [*ours, *sorted(requested, key=lambda m: _depth(m["destination"]))]


def rootfs_propagation(mounts: Sequence[dict[str, Any]]) -> str | None:
    """`linux.rootfsPropagation`: a shared (or slave) volume only propagates if the container's
    root mount is shared (or at least a slave) too."""
    options = {opt for m in mounts for opt in m.get("options", [])}
    if "rshared" in options:
        return "rshared"
    if "rslave" in options:
        return "rslave"
    return None
