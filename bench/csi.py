"""``csi-*``: stowage-csi against kubernetes-csi's csi-driver-host-path, in one run.

Both drivers are started on private sockets and roots in a ``stowage-csi-bench-`` temporary
directory and driven by the same Python gRPC client. Per RPC, the figure is the median latency
in milliseconds over ``ROUNDS`` calls: CreateVolume (1 GiB mount volumes), NodePublishVolume
and NodeUnpublishVolume (staged volumes, a fresh target each), DeleteVolume and CreateSnapshot
(of a volume holding a small file). ``csi-sanity-run`` is the wall time in seconds of a full
csi-sanity run against each driver with every feature it offers enabled.

The reference binary is ``.tools/bin/hostpathplugin`` (override with
``STOWAGE_CSI_REFERENCE``), built from the Go module proxy with the wrapper module in
``bench/csi_reference``. Where the proxy refuses the module (it does here), the reference
figures are reported as unavailable rather than faked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import grpc

from csi_hostpath._pb import csi_pb2 as pb
from csi_hostpath._pb import csi_pb2_grpc as pb_grpc
from tests.unit.csi.support import release_kernel_resources

__all__ = ["bench_csi"]

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.environ.get(
    "STOWAGE_CSI_REFERENCE", os.path.join(TOP, ".tools", "bin", "hostpathplugin")
)
CSI_SANITY = os.path.join(TOP, ".tools", "bin", "csi-sanity")
ROUNDS = 100
GI = 1 << 30
MODE = pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER)
MOUNT = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(), access_mode=MODE)


def _ours(work: str, sock: str, limit: bool) -> list[str]:
    return [
        sys.executable, "-m", "csi_hostpath.server",
        "--endpoint", f"unix://{sock}", "--nodeid", "bench-node",
        "--root", os.path.join(work, "root"), "--allowed-path-prefix", work,
        "--accepted-mutable-parameter", "label", "--log-level", "warning",
        *(["--max-volumes-per-node", "8"] if limit else []),
    ]  # fmt: skip


def _reference(work: str, sock: str, limit: bool) -> list[str]:
    return [
        REFERENCE, f"--endpoint=unix://{sock}", "--nodeid=bench-node",
        f"--statedir={os.path.join(work, 'root')}", "--enable-attach",
        "--enable-controller-modify-volume", "--accepted-mutable-parameter-names=label",
        "--v=0", *(["--maxvolumespernode=8", "--attach-limit=8"] if limit else []),
    ]  # fmt: skip


@contextlib.contextmanager
def _driver(
    cmd: Callable[[str, str, bool], list[str]], tag: str, limit: bool
) -> Iterator[tuple[str, str]]:
    work = tempfile.mkdtemp(prefix=f"stowage-csi-bench-{tag}-")
    sock = os.path.join(work, "csi.sock")
    log = open(os.path.join(work, "driver.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd(work, sock, limit), stdout=log, stderr=log, cwd=TOP)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{tag} driver did not start, see {work}/driver.log")
            time.sleep(0.02)
        yield work, f"unix://{sock}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        release_kernel_resources(work)


def _median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def _timed(rpc: Callable[..., object], request: object) -> float:
    """Seconds one RPC takes (the request is built before the clock starts)."""
    start = time.perf_counter()
    rpc(request, timeout=60)
    return time.perf_counter() - start


def _latencies(endpoint: str, work: str) -> dict[str, float]:
    channel = grpc.insecure_channel(endpoint)
    ctl, node = pb_grpc.ControllerStub(channel), pb_grpc.NodeStub(channel)
    ids: list[str] = []
    create: list[float] = []
    for i in range(ROUNDS):
        req = pb.CreateVolumeRequest(name=f"bench-{i}", volume_capabilities=[MOUNT])
        req.capacity_range.required_bytes = GI
        start = time.perf_counter()
        ids.append(ctl.CreateVolume(req, timeout=60).volume.volume_id)
        create.append(time.perf_counter() - start)
    pods = os.path.join(work, "pods")
    os.makedirs(pods)
    staging = []
    for i, vid in enumerate(ids):
        # The CO's order: attach (ControllerPublish) before staging; the reference insists.
        ctl.ControllerPublishVolume(
            pb.ControllerPublishVolumeRequest(
                volume_id=vid, node_id="bench-node", volume_capability=MOUNT
            ),
            timeout=60,
        )
        path = os.path.join(pods, f"s{i}")
        os.mkdir(path)
        staging.append(path)
        node.NodeStageVolume(
            pb.NodeStageVolumeRequest(
                volume_id=vid, staging_target_path=path, volume_capability=MOUNT
            ),
            timeout=60,
        )
    targets = [os.path.join(pods, f"t{i}") for i in range(ROUNDS)]
    publish = [
        _timed(
            node.NodePublishVolume,
            pb.NodePublishVolumeRequest(
                volume_id=vid, staging_target_path=st, target_path=t, volume_capability=MOUNT
            ),
        )
        for vid, st, t in zip(ids, staging, targets, strict=True)
    ]
    snap_src = ids[0]
    with open(os.path.join(targets[0], "data"), "wb") as f:
        f.write(os.urandom(64 << 10))
    snapshot = [
        _timed(
            ctl.CreateSnapshot,
            pb.CreateSnapshotRequest(name=f"bench-snap-{i}", source_volume_id=snap_src),
        )
        for i in range(ROUNDS)
    ]
    unpublish = [
        _timed(node.NodeUnpublishVolume, pb.NodeUnpublishVolumeRequest(volume_id=v, target_path=t))
        for v, t in zip(ids, targets, strict=True)
    ]
    for vid, s in zip(ids, staging, strict=True):
        node.NodeUnstageVolume(
            pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=s), timeout=60
        )
    for vid in ids:
        ctl.ControllerUnpublishVolume(
            pb.ControllerUnpublishVolumeRequest(volume_id=vid, node_id="bench-node"), timeout=60
        )
    for s in ctl.ListSnapshots(pb.ListSnapshotsRequest(), timeout=60).entries:
        ctl.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=s.snapshot.snapshot_id))
    delete = [_timed(ctl.DeleteVolume, pb.DeleteVolumeRequest(volume_id=v)) for v in ids]
    channel.close()
    return {
        "csi-create-volume": _median_ms(create),
        "csi-node-publish": _median_ms(publish),
        "csi-node-unpublish": _median_ms(unpublish),
        "csi-delete-volume": _median_ms(delete),
        "csi-create-snapshot": _median_ms(snapshot),
    }


def _sanity_seconds(endpoint: str, work: str) -> float:
    mutable = os.path.join(work, "mutable.yaml")
    with open(mutable, "w") as f:
        f.write("label: gold\n")
    cmd = [
        CSI_SANITY, f"--csi.endpoint={endpoint}", f"--csi.mountdir={work}/mnt",
        f"--csi.stagingdir={work}/staging", f"--csi.testvolumemutableparameters={mutable}",
        "--csi.testnodevolumeattachlimit", "--ginkgo.no-color",
    ]  # fmt: skip
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    summary = [ln for ln in res.stdout.splitlines() if "Passed" in ln or "Ran " in ln]
    print(f"csi-sanity against {endpoint}: {' / '.join(summary)}", flush=True)
    return elapsed


def _measure(cmd: Callable[[str, str, bool], list[str]], tag: str) -> dict[str, float]:
    with _driver(cmd, tag, False) as (work, endpoint):
        figures = _latencies(endpoint, work)
    with _driver(cmd, tag, True) as (work, endpoint):
        figures["csi-sanity-run"] = _sanity_seconds(endpoint, work)
    return figures


def bench_csi() -> list[tuple[str, float, float | None]]:
    """(name, stowage, reference) per figure: milliseconds, and seconds for csi-sanity-run;
    the reference is None when its driver could not be built."""
    ours = _measure(_ours, "stowage")
    if not os.access(REFERENCE, os.X_OK):
        return [(name, ours[name], None) for name in ours]
    theirs = _measure(_reference, "reference")
    return [(name, ours[name], theirs[name]) for name in ours]
