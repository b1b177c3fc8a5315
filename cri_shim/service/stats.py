"""Stats RPC answers: cgroup readings and writable-layer usage turned into CRI messages."""

from __future__ import annotations

import time

from cri_shim._pb import api_pb2 as pb
from cri_shim.containers import container_config
from cri_shim.pods import sandbox_config
from cri_shim.runtime import Container, Registry, Sandbox
from cri_shim.stats import CgroupReader, CpuMemory, NanoCoreTracker, cgroup_dir, interface_stats
from images.snapshots import Snapshotter

__all__ = ["StatsCollector"]


def _u64(msg: pb.UInt64Value, value: int | None) -> None:
    if value is not None:
        msg.value = max(0, value)


def _cpu(now: int, reading: CpuMemory | None, nano_cores: int | None) -> pb.CpuUsage:
    cpu = pb.CpuUsage(timestamp=now)
    if reading is not None:
        _u64(cpu.usage_core_nano_seconds, reading.cpu_usage_ns)
    _u64(cpu.usage_nano_cores, nano_cores)
    return cpu


def _memory(now: int, reading: CpuMemory | None) -> pb.MemoryUsage:
    mem = pb.MemoryUsage(timestamp=now)
    if reading is not None:
        _u64(mem.working_set_bytes, reading.working_set)
        _u64(mem.usage_bytes, reading.memory_usage)
        _u64(mem.rss_bytes, reading.rss)
        _u64(mem.page_faults, reading.page_faults)
        _u64(mem.major_page_faults, reading.major_page_faults)
        if reading.limit is not None and reading.working_set is not None:
            _u64(mem.available_bytes, reading.limit - reading.working_set)
    return mem


class StatsCollector:
    def __init__(self, reg: Registry, snapshots: Snapshotter, driver: str) -> None:
        self.reg = reg
        self.snapshots = snapshots
        self.driver = driver
        self.reader = CgroupReader()
        self.rates = NanoCoreTracker()

    def container(self, c: Container) -> pb.ContainerStats:
        cfg = container_config(c)
        now = time.time_ns()
        path = str(c.meta.extra.get("cgroup", ""))
        reading = self.reader.read(cgroup_dir(path, self.driver)) if path else None
        rate = self.rates.rate(c.meta.id, now, None if reading is None else reading.cpu_usage_ns)
        used, inodes = self.snapshots.usage(c.meta.snapshot_key)
        layer = pb.FilesystemUsage(
            timestamp=now, fs_id=pb.FilesystemIdentifier(mountpoint=self.snapshots.root)
        )
        layer.used_bytes.value = used
        layer.inodes_used.value = inodes
        return pb.ContainerStats(
            attributes=pb.ContainerAttributes(
                id=c.meta.id,
                metadata=cfg.metadata,
                labels=cfg.labels,
                annotations=cfg.annotations,
            ),
            cpu=_cpu(now, reading, rate),
            memory=_memory(now, reading),
            writable_layer=layer,
        )

    def sandbox(self, sb: Sandbox) -> pb.PodSandboxStats:
        cfg = sandbox_config(sb)
        now = time.time_ns()
        containers = [self.container(c) for c in self.reg.containers_of(sb.meta.id)]
        reading = None
        if sb.meta.cgroup_parent:
            reading = self.reader.read(cgroup_dir(sb.meta.cgroup_parent, self.driver))
        if reading is None:
            total_cpu = sum(c.cpu.usage_core_nano_seconds.value for c in containers)
            total_ws = sum(c.memory.working_set_bytes.value for c in containers)
            reading = CpuMemory(total_cpu, None, total_ws, None, None, None, None, None)
        rate = self.rates.rate("pod:" + sb.meta.id, now, reading.cpu_usage_ns)
        linux = pb.LinuxPodSandboxStats(
            cpu=_cpu(now, reading, rate),
            memory=_memory(now, reading),
            containers=containers,
        )
        if sb.meta.netns_path and sb.status.state == "ready":
            ifaces = interface_stats(sb.meta.netns_path)
            if ifaces:
                stats = [pb.NetworkInterfaceUsage(name=i.name) for i in ifaces]
                for msg, i in zip(stats, ifaces, strict=True):
                    _u64(msg.rx_bytes, i.rx_bytes)
                    _u64(msg.rx_errors, i.rx_errors)
                    _u64(msg.tx_bytes, i.tx_bytes)
                    _u64(msg.tx_errors, i.tx_errors)
                default = next((s for s in stats if s.name == "eth0"), stats[0])
                linux.network.CopyFrom(pb.NetworkUsage(
                    timestamp=now, default_interface=default,
                    interfaces=[s for s in stats if s is not default],
                ))  # fmt: skip
        if reading.pids is not None:
            linux.process.CopyFrom(pb.ProcessUsage(timestamp=now))
            linux.process.process_count.value = reading.pids
        return pb.PodSandboxStats(
            attributes=pb.PodSandboxAttributes(
                id=sb.meta.id,
                metadata=cfg.metadata,
                labels=cfg.labels,
                annotations=cfg.annotations,
            ),
            linux=linux,
        )
