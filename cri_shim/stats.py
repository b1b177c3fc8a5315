"""Resource usage from cgroups (v1 controllers or the v2 unified hierarchy) and a pod's network.

Pure parts: where a cgroupsPath lives on disk for each driver, parsing of the control files,
and the CPU rate from two samples. ``CgroupReader`` is the thin shell that reads the files.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from dataclasses import dataclass

__all__ = [
    "CgroupReader",
    "CpuMemory",
    "InterfaceStats",
    "NanoCoreTracker",
    "cgroup_dir",
    "interface_stats",
    "join_cgroup",
    "parse_flat_keyed",
    "pod_cgroup_dir",
]

CGROUP_ROOT = "/sys/fs/cgroup"


def _expand_slice(slice_name: str) -> str:
    """systemd's slice nesting: "a-b-c.slice" lives at /a.slice/a-b.slice/a-b-c.slice."""
    if slice_name in ("", "-.slice"):
        return "/"
    stem = slice_name.removesuffix(".slice")
    parts = stem.split("-")
    path = ""
    prefix = ""
    for part in parts:
        prefix = f"{prefix}-{part}" if prefix else part
        path += f"/{prefix}.slice"
    return path


def cgroup_dir(cgroups_path: str, driver: str) -> str:
    """The cgroup's path below a hierarchy's mount point, for an OCI ``cgroupsPath``."""
    if driver == "systemd" and cgroups_path.count(":") == 2:
        parent, prefix, name = cgroups_path.split(":")
        return f"{_expand_slice(parent).rstrip('/')}/{prefix}-{name}.scope"
    return "/" + cgroups_path.strip("/")


def pod_cgroup_dir(cgroup_parent: str, driver: str) -> str | None:
    """The pod's own cgroup (the kubelet's ``cgroup_parent``) below a hierarchy's mount
    point; None when the pod has none."""
    if not cgroup_parent.strip("/"):
        return None
    if driver == "systemd":
        return _expand_slice(os.path.basename(cgroup_parent.rstrip("/")))
    return "/" + cgroup_parent.strip("/")


def join_cgroup(pid: int, rel: str, root: str = CGROUP_ROOT) -> int:
    """Moves ``pid`` into the cgroup ``rel`` in every hierarchy where it exists (the kubelet
    makes a pod's cgroup in each); returns in how many. Never creates one: a cgroup we made
    would be ours to remove."""
    roots = [root] if os.path.exists(os.path.join(root, "cgroup.procs")) else []
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            # "cpu" and "cpuacct" are often links to "cpu,cpuacct": one write is enough.
            if not os.path.islink(path) and os.path.exists(os.path.join(path, "cgroup.procs")):
                roots.append(path)
    joined = 0
    for hierarchy in roots:
        procs = os.path.join(hierarchy, rel.lstrip("/"), "cgroup.procs")
        try:
            with open(procs, "w") as f:
                f.write(str(pid))
            joined += 1
        except OSError:
            continue
    return joined


def parse_flat_keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


@dataclass(frozen=True)
class CpuMemory:
    cpu_usage_ns: int | None
    memory_usage: int | None
    working_set: int | None
    rss: int | None
    page_faults: int | None
    major_page_faults: int | None
    limit: int | None
    pids: int | None


class CgroupReader:
    def __init__(self, root: str = CGROUP_ROOT) -> None:
        self.root = root
        self.v2 = os.path.exists(os.path.join(root, "cgroup.controllers"))

    def _read(self, *parts: str) -> str | None:
        try:
            with open(os.path.join(self.root, *parts)) as f:
                return f.read()
        except OSError:
            return None

    def _int(self, *parts: str) -> int | None:
        text = self._read(*parts)
        if text is None:
            return None
        text = text.strip()
        return int(text) if text.isdigit() else None

    def oom_kills(self, path: str) -> int:
        """How many processes the kernel's OOM killer took from this cgroup."""
        rel = path.strip("/")
        if self.v2:
            events = self._read(rel, "memory.events")
        else:
            events = self._read("memory", rel, "memory.oom_control")
        return parse_flat_keyed(events or "").get("oom_kill", 0)

    def read(self, path: str) -> CpuMemory | None:
        rel = path.strip("/")
        if self.v2:
            return self._read_v2(rel)
        return self._read_v1(rel)

    def _read_v1(self, rel: str) -> CpuMemory | None:
        cpu = self._int("cpuacct", rel, "cpuacct.usage")
        usage = self._int("memory", rel, "memory.usage_in_bytes")
        if cpu is None and usage is None:
            return None
        stat = parse_flat_keyed(self._read("memory", rel, "memory.stat") or "")
        inactive = stat.get("total_inactive_file", 0)
        working = None if usage is None else max(0, usage - inactive)
        limit = self._int("memory", rel, "memory.limit_in_bytes")
        return CpuMemory(
            cpu_usage_ns=cpu,
            memory_usage=usage,
            working_set=working,
            rss=stat.get("total_rss"),
            page_faults=stat.get("total_pgfault"),
            major_page_faults=stat.get("total_pgmajfault"),
            limit=limit if limit is not None and limit < (1 << 62) else None,
            pids=self._int("pids", rel, "pids.current"),
        )

    def _read_v2(self, rel: str) -> CpuMemory | None:
        cpu_stat = self._read(rel, "cpu.stat")
        usage = self._int(rel, "memory.current")
        if cpu_stat is None and usage is None:
            return None
        cpu = parse_flat_keyed(cpu_stat or "").get("usage_usec")
        stat = parse_flat_keyed(self._read(rel, "memory.stat") or "")
        inactive = stat.get("inactive_file", 0)
        return CpuMemory(
            cpu_usage_ns=None if cpu is None else cpu * 1000,
            memory_usage=usage,
            working_set=None if usage is None else max(0, usage - inactive),
            rss=stat.get("anon"),
            page_faults=stat.get("pgfault"),
            major_page_faults=stat.get("pgmajfault"),
            limit=self._int(rel, "memory.max"),
            pids=self._int(rel, "pids.current"),
        )


class NanoCoreTracker:
    """usage_nano_cores needs two samples: keeps the last one per object."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def rate(self, key: str, now_ns: int, usage_ns: int | None) -> int | None:
        if usage_ns is None:
            return None
        with self._lock:
            prev = self._last.get(key)
            self._last[key] = (now_ns, usage_ns)
        if prev is None or now_ns <= prev[0] or usage_ns < prev[1]:
            return None
        return (usage_ns - prev[1]) * 1_000_000_000 // (now_ns - prev[0])

    def forget(self, key: str) -> None:
        with self._lock:
            self._last.pop(key, None)


@dataclass(frozen=True)
class InterfaceStats:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


def parse_ip_stats(text: str) -> list[InterfaceStats]:
    """Parses ``ip -s -j link`` output."""
    out = []
    for link in json.loads(text or "[]"):
        st = link.get("stats64") or link.get("stats") or {}
        rx, tx = st.get("rx", {}), st.get("tx", {})
        out.append(InterfaceStats(
            name=str(link.get("ifname", "")),
            rx_bytes=int(rx.get("bytes", 0)),
            rx_errors=int(rx.get("errors", 0)),
            tx_bytes=int(tx.get("bytes", 0)),
            tx_errors=int(tx.get("errors", 0)),
        ))  # fmt: skip
    return out


def interface_stats(netns_path: str) -> list[InterfaceStats]:
    """The interfaces of a pod's network namespace, read by a short-lived child in it (the
    daemon never enters a namespace itself)."""
    res = subprocess.run(
        ["nsenter", f"--net={netns_path}", "ip", "-s", "-j", "link", "show"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if res.returncode != 0:
        return []
    return [s for s in parse_ip_stats(res.stdout) if s.name != "lo"]
