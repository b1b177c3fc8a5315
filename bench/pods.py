"""Pod lifecycle latency and memory: stowage-cri against Debian's containerd 1.6, both with the
same reference CNI plugins (bridge + host-local + portmap on a bench-only subnet) and the same
busybox image, driven by the same CRI client code, in one run.

Figures (lower is better):
- ``run-pod-sandbox``: RunPodSandbox, median ms;
- ``create-container``: CreateContainer, median ms (we run ``runc create`` here, as CRI-O
  does; containerd defers it to StartContainer);
- ``start-container``: StartContainer, median ms;
- ``pod-start``: RunPodSandbox + CreateContainer + StartContainer, median ms (p95 is printed
  too, as ``pod-start-p95``);
- ``pod-teardown``: StopPodSandbox + RemovePodSandbox of a pod with a running container;
- ``memory-per-pod``: proportional set size (PSS) of the runtime's own processes (daemon,
  shims or conmons, infra processes) per running pod, from 1 and ``MANY`` running pods;
- ``memory-1-pod``, ``memory-50-pods``: that PSS in all, daemon included, in MB.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import grpc
import psutil

from bench.containerd import containerd
from cri_shim._pb import api_pb2 as pb
from cri_shim._pb import api_pb2_grpc as pb_grpc
from images.hosts import write_mirror_config
from tests.harness import cni_network, registry, stowage_daemon
from tests.images.publish import publish_catalog

__all__ = ["bench_pods"]

BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
ROUNDS = 50
MANY = 50


def _pod_config(i: int, log_dir: str) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"bench-{i}", namespace="bench", uid=f"uid-{i}"),
        log_directory=log_dir,
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(pid=pb.CONTAINER)
            )
        ),
    )


def _container_config() -> pb.ContainerConfig:
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="main"),
        image=pb.ImageSpec(image=BUSYBOX),
        command=["sleep", "3600"],
        log_path="main.log",
    )


class Client:
    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.rt = pb_grpc.RuntimeServiceStub(self.channel)
        self.img = pb_grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1000


def _start_pod(c: Client, i: int, log_dir: str) -> tuple[str, dict[str, float]]:
    cfg = _pod_config(i, log_dir)
    res, t_run = _timed(lambda: c.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)))
    pod = res.pod_sandbox_id
    req = pb.CreateContainerRequest(
        pod_sandbox_id=pod, config=_container_config(), sandbox_config=cfg
    )
    cres, t_create = _timed(lambda: c.rt.CreateContainer(req))
    cid = cres.container_id
    _, t_start = _timed(lambda: c.rt.StartContainer(pb.StartContainerRequest(container_id=cid)))
    return pod, {"run": t_run, "create": t_create, "start": t_start}


def _teardown(c: Client, pod: str) -> float:
    def down() -> None:
        c.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
        c.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))

    return _timed(down)[1]


def _pss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_full_info().pss
    return total


def _measure(endpoint: str, runtime_pids: Callable[[], list[int]]) -> dict[str, float]:
    c = Client(endpoint)
    log_dir = tempfile.mkdtemp(prefix="stowage-bench-logs-")
    try:
        c.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=BUSYBOX)))
        runs, creates, starts, totals, downs = [], [], [], [], []
        for i in range(ROUNDS):
            pod, t = _start_pod(c, i, log_dir)
            runs.append(t["run"])
            creates.append(t["create"])
            starts.append(t["start"])
            totals.append(t["run"] + t["create"] + t["start"])
            downs.append(_teardown(c, pod))
        pods = [_start_pod(c, 1000 + i, log_dir)[0] for i in range(MANY)]
        time.sleep(1)
        many = _pss(runtime_pids())
        for pod in pods[1:]:
            _teardown(c, pod)
        time.sleep(1)
        one = _pss(runtime_pids())
        _teardown(c, pods[0])
    finally:
        c.close()
        shutil.rmtree(log_dir, ignore_errors=True)
    totals.sort()
    return {
        "run-pod-sandbox": statistics.median(runs),
        "create-container": statistics.median(creates),
        "start-container": statistics.median(starts),
        "pod-start": statistics.median(totals),
        "pod-start-p95": totals[int(len(totals) * 0.95) - 1],
        "pod-teardown": statistics.median(downs),
        "memory-per-pod": (many - one) / (MANY - 1) / (1 << 20),
        # The runtime's whole footprint (daemon included), in MB, with 1 and MANY pods.
        "memory-1-pod": one / (1 << 20),
        f"memory-{MANY}-pods": many / (1 << 20),
    }


def _descendants(root_pid: int, names: tuple[str, ...]) -> list[int]:
    """The runtime's processes: the daemon and every process of the given names."""
    pids = [root_pid]
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in names:
            pids.append(p.pid)
    return pids


def _remove_pods(endpoint: str) -> None:
    with contextlib.suppress(Exception):
        c = Client(endpoint)
        for item in c.rt.ListPodSandbox(pb.ListPodSandboxRequest()).items:
            _teardown(c, item.id)
        c.close()


def bench_pods() -> list[tuple[str, float, float]]:
    with registry() as reg, cni_network("10.205.0.0/16", "stwbench0") as net:
        publish_catalog(reg.url)
        with stowage_daemon(reg.url, net) as d:
            assert d.proc is not None
            pid = d.proc.pid
            ours = _measure(d.endpoint, lambda: _descendants(pid, ("conmon", "stowage-pause")))
        certs = tempfile.mkdtemp(prefix="stowage-bench-certs-")
        try:
            write_mirror_config(certs, ["registry.k8s.io"], reg.url)
            with containerd(certs, net) as ref:
                try:
                    theirs = _measure(
                        ref.endpoint,
                        lambda: _descendants(ref.pid, ("containerd-shim-runc-v2", "pause")),
                    )
                finally:
                    _remove_pods(ref.endpoint)
        finally:
            shutil.rmtree(certs, ignore_errors=True)
    return [(name, ours[name], theirs[name]) for name in ours]
