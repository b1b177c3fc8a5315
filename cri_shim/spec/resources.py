"""cgroup placement and limits of a container: `linux.cgroupsPath`, `linux.resources`, and
`process.oomScoreAdj`.

Zero means "not set" in the CRI's LinuxContainerResources (proto3 has no presence for scalars),
so only non-zero values reach the spec and the rest stay unlimited.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from cri_shim.spec.security import SpecError

__all__ = [
    "OOM_SCORE_ADJ_MAX",
    "OOM_SCORE_ADJ_MIN",
    "cgroup_parent_path",
    "linux_resources",
    "oom_score_adj",
]

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000

SYSTEMD_PREFIX = "stowage"
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_PAGE_SIZE = re.compile(r"^\d+(KB|MB|GB|TB|PB)$")


def cgroup_parent_path(parent: str, driver: str, scope_name: str) -> str:
    """The OCI `cgroupsPath` of `scope_name` under the kubelet's `cgroup_parent`.

    systemd: runc's "slice:prefix:name" form; the kubelet sends either a bare slice name
    ("kubepods-besteffort-pod1.slice") or a path whose last element is one ("/test.slice"),
    and the slice's name already encodes its place in the tree. An empty parent lets runc use
    system.slice. cgroupfs: a plain path below the parent ("/" when none).
    """
    if not scope_name or "/" in scope_name or ":" in scope_name:
        raise SpecError(f"invalid cgroup scope name {scope_name!r}")
    if driver == "systemd":
        slice_name = posixpath.basename(parent.rstrip("/"))
        if slice_name and not slice_name.endswith(".slice"):
            raise SpecError(
                f"cgroup_parent {parent!r} is not a systemd slice (the cgroup driver is systemd)"
            )
        return f"{slice_name}:{SYSTEMD_PREFIX}:{scope_name}"
    if driver == "cgroupfs":
        if ":" in parent:
            raise SpecError(f"cgroup_parent {parent!r} looks like a systemd path")
        base = posixpath.normpath("/" + parent.strip("/")) if parent.strip("/") else "/"
        return posixpath.join(base, scope_name)
    raise SpecError(f"unknown cgroup driver {driver!r}")


def _positive(value: int, what: str) -> int:
    if value < 0:
        raise SpecError(f"{what} must not be negative, got {value}")
    return value


def linux_resources(res: Any, *, pids_limit: int = 0, hugetlb: bool = True) -> dict[str, Any]:
    """`linux.resources` (without devices) from a LinuxContainerResources message (or None).

    `pids_limit` comes from the daemon's configuration: the CRI carries no per-container pids
    limit (the kubelet limits pids on the pod's cgroup); 0 or less means unlimited.

    `hugetlb` says whether the host has the hugetlb cgroup controller. The kubelet sends a
    limit (0 unless requested) for every page size in /sys/kernel/mm/hugepages, controller or
    not; without the controller runc refuses any limit, so they are dropped (what containerd's
    default `tolerate_missing_hugetlb_controller` and CRI-O do).
    """
    out: dict[str, Any] = {}
    if pids_limit > 0:
        out["pids"] = {"limit": pids_limit}
    if res is None:
        return out
    cpu: dict[str, Any] = {}
    if res.cpu_shares:
        cpu["shares"] = _positive(res.cpu_shares, "cpu_shares")
    if res.cpu_quota:
        # -1 is the kernel's "no quota"; anything else must be a positive number of microseconds.
        if res.cpu_quota < 0 and res.cpu_quota != -1:
            raise SpecError(f"cpu_quota must be positive or -1, got {res.cpu_quota}")
        cpu["quota"] = res.cpu_quota
    if res.cpu_period:
        cpu["period"] = _positive(res.cpu_period, "cpu_period")
    for field, key in (("cpuset_cpus", "cpus"), ("cpuset_mems", "mems")):
        value = getattr(res, field).replace(" ", "")
        if value:
            if not _CPUSET.match(value):
                raise SpecError(f"invalid {field} {value!r}")
            cpu[key] = value
    if cpu:
        out["cpu"] = cpu
    memory: dict[str, Any] = {}
    limit = res.memory_limit_in_bytes
    if limit:
        memory["limit"] = _positive(limit, "memory_limit_in_bytes")
    swap = res.memory_swap_limit_in_bytes
    if swap:
        # OCI swap is memory+swap; -1 is unlimited. Below the memory limit it makes no sense and
        # runc would refuse it at start with a less helpful message.
        if swap != -1 and (swap < 0 or (limit > 0 and swap < limit)):
            raise SpecError(
                f"memory_swap_limit_in_bytes ({swap}) must be -1 or at least "
                f"memory_limit_in_bytes ({limit})"
            )
        memory["swap"] = swap
    if memory:
        out["memory"] = memory
    hugepages = []
    for hp in res.hugepage_limits:
        if not _PAGE_SIZE.match(hp.page_size):
            raise SpecError(f"invalid hugepage size {hp.page_size!r} (expected e.g. 2MB, 1GB)")
        hugepages.append({"pageSize": hp.page_size, "limit": hp.limit})
    if hugepages and hugetlb:
        out["hugepageLimits"] = hugepages
    unified: Mapping[str, str] = res.unified
    if unified:
        for key in unified:
            if "/" in key or "." not in key:
                raise SpecError(f"invalid unified cgroup key {key!r}")
        out["unified"] = dict(sorted(unified.items()))
    return out


def oom_score_adj(value: int, *, restrict: bool, daemon_score: int) -> int:
    """`process.oomScoreAdj`. With `restrict`, a container may not be less likely to be
    OOM-killed than the daemon itself: lowering the score needs CAP_SYS_RESOURCE, which a
    daemon running in a user namespace or under a restricted unit does not have."""
    if not OOM_SCORE_ADJ_MIN <= value <= OOM_SCORE_ADJ_MAX:
        raise SpecError(f"oom_score_adj {value} is outside [-1000, 1000]")
    if restrict and value < daemon_score:
        return daemon_score
    return value
