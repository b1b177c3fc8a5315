"""Concurrent CRI calls against one stowage-cri: whole pod lifecycles on different pods at once,
and racing calls on one pod (creates and starts against its stop and removal). Whatever the
interleaving, every call ends in a success or a clear status, and nothing is left behind."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psutil
import pytest

from cri_shim._pb import api_pb2 as pb
from cri_shim._pb import api_pb2_grpc as pb_grpc
from tests.harness import StowageDaemon, cni_network, registry, stowage_daemon, wait_for
from tests.images.publish import publish_catalog

pytestmark = [pytest.mark.root, pytest.mark.registry, pytest.mark.daemon]

BUSYBOX = "registry.k8s.io/e2e-test-images/busybox:1.29-2"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with registry() as reg, cni_network() as net:
        publish_catalog(reg.url)
        yield reg.url, net


@pytest.fixture(scope="module")
def daemon(env: tuple[str, str]) -> Iterator[StowageDaemon]:
    with stowage_daemon(*env) as d:
        yield d


@pytest.fixture
def rt(daemon: StowageDaemon) -> Iterator[pb_grpc.RuntimeServiceStub]:
    channel = grpc.insecure_channel(daemon.endpoint)
    pb_grpc.ImageServiceStub(channel).PullImage(
        pb.PullImageRequest(image=pb.ImageSpec(image=BUSYBOX))
    )
    yield pb_grpc.RuntimeServiceStub(channel)
    channel.close()


def _pod(name: str, log_dir: Path) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, namespace="conc", uid=f"uid-{name}"),
        log_directory=str(log_dir),
    )


def _ctr(name: str) -> pb.ContainerConfig:
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name),
        image=pb.ImageSpec(image=BUSYBOX),
        command=["sleep", "3600"],
        log_path=f"{name}.log",
    )


def _assert_nothing_left(d: StowageDaemon, rt: pb_grpc.RuntimeServiceStub) -> None:
    assert list(rt.ListPodSandbox(pb.ListPodSandboxRequest()).items) == []
    assert list(rt.ListContainers(pb.ListContainersRequest()).containers) == []
    runc = subprocess.run(
        ["runc", "--root", os.path.join(d.state, "runc"), "list", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert runc.stdout.split() == []
    ns_dir = os.path.join(d.state, "ns")  # a private mount of its own, for the daemon's life
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    assert [m for m in mounts if m.startswith(d.work) and m != ns_dir] == []
    active = Path(d.root) / "images" / "snapshots" / "active"
    assert not active.exists() or list(active.iterdir()) == []
    for kind in ("ns", "pods", "containers", "exits"):
        assert list(Path(d.state, kind).iterdir()) == [], kind
    for hierarchy in ("cpu", "memory", "pids"):
        cgroups = [n for n in os.listdir(f"/sys/fs/cgroup/{hierarchy}") if len(n) == 64]
        assert cgroups == [], f"container cgroups left in {hierarchy}"
    veths = [n for n in os.listdir("/sys/class/net") if n.startswith("veth")]
    assert veths == [], "every pod's veth is gone"


def test_whole_lifecycles_on_eight_pods_at_once(
    daemon: StowageDaemon, rt: pb_grpc.RuntimeServiceStub, tmp_path: Path
) -> None:
    def lifecycle(i: int) -> str:
        cfg = _pod(f"par-{i}", tmp_path)
        pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
        cid = rt.CreateContainer(
            pb.CreateContainerRequest(pod_sandbox_id=pod, config=_ctr("main"), sandbox_config=cfg)
        ).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        out = rt.ExecSync(
            pb.ExecSyncRequest(container_id=cid, cmd=["echo", f"pod-{i}"], timeout=30)
        )
        assert out.stdout == f"pod-{i}\n".encode()
        ip = rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod)).status.network.ip
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
        return ip

    with ThreadPoolExecutor(8) as pool:
        ips = list(pool.map(lifecycle, range(8)))
    assert len(set(ips)) == 8, ips
    _assert_nothing_left(daemon, rt)


@pytest.mark.parametrize("seed", range(6))
def test_creates_and_starts_racing_the_pods_stop_and_removal(
    daemon: StowageDaemon, rt: pb_grpc.RuntimeServiceStub, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible interleaving, not a secret
    cfg = _pod(f"race-{seed}", tmp_path)
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    go = threading.Barrier(7)
    created: list[str] = []
    refused_creates: list[grpc.StatusCode] = []
    refused_starts: list[grpc.StatusCode] = []
    lock = threading.Lock()

    # Six creates take ~20 ms in all (they queue on the pod's lock): stop lands among them.
    delays = [rng.uniform(0, 0.02) for _ in range(7)]

    def create_and_start(i: int) -> None:
        go.wait()
        threading.Event().wait(delays[i])
        try:
            cid = rt.CreateContainer(
                pb.CreateContainerRequest(
                    pod_sandbox_id=pod, config=_ctr(f"c{i}"), sandbox_config=cfg
                )
            ).container_id
        except grpc.RpcError as exc:
            with lock:
                refused_creates.append(exc.code())
            return
        with lock:
            created.append(cid)
        try:
            rt.StartContainer(pb.StartContainerRequest(container_id=cid))
        except grpc.RpcError as exc:
            with lock:
                refused_starts.append(exc.code())

    def stop_then_remove() -> None:
        go.wait()
        threading.Event().wait(delays[-1])
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))

    with ThreadPoolExecutor(7) as pool:
        futures = [pool.submit(create_and_start, i) for i in range(6)]
        futures.append(pool.submit(stop_then_remove))
        for f in futures:
            f.result()
    # A create that lost the race is refused as the pod not being ready (or gone); a start
    # that lost it finds its container stopped or removed. Nothing else is acceptable.
    allowed = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}
    assert set(refused_creates) <= allowed, refused_creates
    assert set(refused_starts) <= allowed, refused_starts
    assert len(created) + len(refused_creates) == 6
    for cid in created:
        with pytest.raises(grpc.RpcError) as gone:
            rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    _assert_nothing_left(daemon, rt)


def test_one_name_many_run_pod_sandboxes(
    daemon: StowageDaemon, rt: pb_grpc.RuntimeServiceStub, tmp_path: Path
) -> None:
    cfg = _pod("same-name", tmp_path)
    go = threading.Barrier(4)

    def run(_: int) -> str | grpc.StatusCode:
        go.wait()
        try:
            return str(rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id)
        except grpc.RpcError as exc:
            return exc.code()

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(run, range(4)))
    pods = [o for o in outcomes if isinstance(o, str)]
    assert len(pods) == 1, outcomes
    assert [o for o in outcomes if not isinstance(o, str)] == [grpc.StatusCode.ALREADY_EXISTS] * 3
    # Stopped and removed several times at once: every call succeeds, once is what happens.
    go2 = threading.Barrier(6)

    def stop_or_remove(i: int) -> None:
        go2.wait()
        if i < 4:
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pods[0]))
        else:
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pods[0]))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(stop_or_remove, range(6)))
    _assert_nothing_left(daemon, rt)


def _race_on_one_container(
    rt: pb_grpc.RuntimeServiceStub, pod: str, cfg: pb.PodSandboxConfig, round_: int
) -> None:
    cid = rt.CreateContainer(
        pb.CreateContainerRequest(pod_sandbox_id=pod, config=_ctr(f"r{round_}"), sandbox_config=cfg)
    ).container_id
    go = threading.Barrier(4)
    codes: list[grpc.StatusCode] = []
    lock = threading.Lock()

    def call(kind: str) -> None:
        go.wait()
        try:
            if kind == "start":
                rt.StartContainer(pb.StartContainerRequest(container_id=cid))
            elif kind == "exec":
                rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10))
            elif kind == "stop":
                rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
            else:
                rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
        except grpc.RpcError as exc:
            with lock:
                codes.append(exc.code())

    kinds = ["start", "exec", "stop", "remove"]
    random.Random(round_).shuffle(kinds)  # noqa: S311 - an order, not a secret
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(call, kinds))
    # Losing a race is a clear refusal; the remove, whenever it ran, has the last word.
    assert set(codes) <= {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    with pytest.raises(grpc.RpcError) as gone:
        rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_remove_start_stop_and_exec_racing_on_one_container(
    daemon: StowageDaemon, rt: pb_grpc.RuntimeServiceStub, tmp_path: Path
) -> None:
    cfg = _pod("one-ctr", tmp_path)
    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    for round_ in range(4):
        _race_on_one_container(rt, pod, cfg, round_)
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))
    _assert_nothing_left(daemon, rt)


@pytest.mark.parametrize("seed", range(3))
def test_kill_9_amid_eight_concurrent_lifecycles_leaks_nothing(
    env: tuple[str, str], tmp_path: Path, seed: int
) -> None:
    _kill_9_amid_lifecycles(env[0], env[1], tmp_path, seed, host_ports=False)


@pytest.mark.parametrize("seed", range(2))
def test_kill_9_amid_lifecycles_on_our_cni_plugin_with_host_ports(
    env: tuple[str, str], tmp_path: Path, seed: int
) -> None:
    from tests.harness import stowage_cni_network

    with stowage_cni_network() as net:
        _kill_9_amid_lifecycles(env[0], net, tmp_path, seed, host_ports=True)
    table = subprocess.run(
        ["nft", "-j", "list", "table", "inet", "stowage_cni"], capture_output=True, text=True
    )
    if table.returncode == 0:  # our plugin's rules: every set and map is empty again
        items = json.loads(table.stdout)["nftables"]
        filled = [
            x[kind]["name"]
            for x in items
            for kind in ("set", "map")
            if kind in x and x[kind].get("elem")
        ]
        assert filled == [], "no port mapping or masquerade entry is left"


def _kill_9_amid_lifecycles(
    mirror: str, net: str, tmp_path: Path, seed: int, host_ports: bool
) -> None:
    ipam = Path(net).parent / "ipam"
    infra_before = _live_infra()
    with stowage_daemon(mirror, net) as d:
        channel = grpc.insecure_channel(d.endpoint)
        pb_grpc.ImageServiceStub(channel).PullImage(
            pb.PullImageRequest(image=pb.ImageSpec(image=BUSYBOX))
        )
        rt = pb_grpc.RuntimeServiceStub(channel)
        started: dict[str, str] = {}  # container id -> pod id, once StartContainer answered
        stopping: set[str] = set()  # pods we asked to stop and remove

        def lifecycle(i: int) -> None:
            # Runs until the daemon dies under it: every call may be the one cut short.
            with contextlib.suppress(grpc.RpcError):
                for n in range(100):
                    cfg = _pod(f"k{seed}-{i}-{n}", tmp_path)
                    if host_ports:
                        cfg.port_mappings.append(
                            pb.PortMapping(
                                protocol=pb.TCP, container_port=80, host_port=31000 + 100 * i + n
                            )
                        )
                    pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
                    cid = rt.CreateContainer(
                        pb.CreateContainerRequest(
                            pod_sandbox_id=pod, config=_ctr("main"), sandbox_config=cfg
                        )
                    ).container_id
                    rt.StartContainer(pb.StartContainerRequest(container_id=cid))
                    started[cid] = pod
                    if n % 2:
                        stopping.add(pod)
                        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod))
                        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod))

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(lifecycle, i) for i in range(8)]
            threading.Event().wait(random.Random(seed).uniform(0.3, 1.5))  # noqa: S311
            d.kill()
            for f in futures:
                f.result()
        channel.close()
        d.start()
        channel = grpc.insecure_channel(d.endpoint)
        rt = pb_grpc.RuntimeServiceStub(channel)
        pods = list(rt.ListPodSandbox(pb.ListPodSandboxRequest()).items)
        running = {
            c.id
            for c in rt.ListContainers(pb.ListContainersRequest()).containers
            if c.state == pb.CONTAINER_RUNNING
        }
        # Every container we saw start still runs, unless we asked for its pod's end.
        lost = [c for c, pod in started.items() if pod not in stopping and c not in running]
        assert lost == [], "a container the daemon's death should not have touched"
        for cid in running:  # still really running after the restart
            out = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=10))
            assert out.exit_code == 0
        for p in pods:
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=p.id))
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=p.id))
        _assert_nothing_left(d, rt)
        channel.close()
        conmons = subprocess.run(["pgrep", "-f", f"conmon.*{d.work}"], capture_output=True)
        assert conmons.stdout == b"", "no conmon outlives its container"
    leftover = [p.name for p in ipam.rglob("*") if p.is_file() and p.name.startswith("10.")]
    assert leftover == [], "every pod address went back to the pool"
    # Pods caught half-made by the kill have an infra process and no record: the start-up
    # sweep ends them too.
    wait_for(lambda: _live_infra() <= infra_before, 10, "no infra process to outlive its pod")


def _live_infra() -> set[int]:
    """Running (not yet reaped is fine) stowage-pause processes."""
    out = set()
    for proc in psutil.process_iter(["name", "status"]):
        if proc.info["name"] == "stowage-pause" and proc.info["status"] != psutil.STATUS_ZOMBIE:
            out.add(proc.pid)
    return out
