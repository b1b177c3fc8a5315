"""Root + daemon: stowage-csi killed with SIGKILL, once at a quiet moment and repeatedly in the
middle of a stream of calls, then restarted: state and mounts are reconciled, every call is
still idempotent, and cleaning up through the API leaves no mount or loop device behind."""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from csi_hostpath._pb import csi_pb2 as pb
from csi_hostpath._pb import csi_pb2_grpc as pb_grpc
from tests.unit.csi.support import CsiDaemon, kernel_leftovers, release_kernel_resources

pytestmark = [
    pytest.mark.root,
    pytest.mark.daemon,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, loop devices)"),
]

MODE = pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER)
MOUNT = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(), access_mode=MODE)
BLOCK = pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(), access_mode=MODE)


class Client:
    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.ctl = pb_grpc.ControllerStub(self.channel)
        self.node = pb_grpc.NodeStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def create(self, name: str, cap: pb.VolumeCapability = MOUNT) -> str:
        req = pb.CreateVolumeRequest(name=name, volume_capabilities=[cap])
        req.capacity_range.required_bytes = 64 << 20
        return str(self.ctl.CreateVolume(req, timeout=30).volume.volume_id)

    def stage_publish(self, vid: str, staging: str, target: str, cap: pb.VolumeCapability) -> None:
        self.node.NodeStageVolume(
            pb.NodeStageVolumeRequest(
                volume_id=vid, staging_target_path=staging, volume_capability=cap
            ),
            timeout=30,
        )
        self.node.NodePublishVolume(
            pb.NodePublishVolumeRequest(
                volume_id=vid,
                staging_target_path=staging,
                target_path=target,
                volume_capability=cap,
            ),
            timeout=30,
        )

    def teardown(self, vid: str, staging: str, target: str) -> None:
        self.node.NodeUnpublishVolume(
            pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target), timeout=30
        )
        self.node.NodeUnstageVolume(
            pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging), timeout=30
        )
        self.ctl.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vid), timeout=30)

    def volume_ids(self) -> set[str]:
        resp = self.ctl.ListVolumes(pb.ListVolumesRequest(), timeout=30)
        return {e.volume.volume_id for e in resp.entries}


@pytest.fixture
def work() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="stowage-csi-recovery-")
    try:
        os.makedirs(os.path.join(path, "kubelet"))
        yield path
    finally:
        release_kernel_resources(path)


def test_kill9_at_rest_then_restart(work: str) -> None:
    daemon = CsiDaemon(work)
    daemon.start()
    client = Client(daemon.endpoint)
    try:
        vols = {}
        for name, cap in (("m", MOUNT), ("b", BLOCK)):
            vid = client.create(name, cap)
            staging = os.path.join(work, "kubelet", f"{name}-staging")
            os.mkdir(staging)
            target = os.path.join(work, "kubelet", f"{name}-target")
            client.stage_publish(vid, staging, target, cap)
            vols[name] = (vid, staging, target, cap)
        Path(vols["m"][2], "file").write_text("survives")
        daemon.kill9()
        daemon.start()
        assert client.volume_ids() == {v[0] for v in vols.values()}
        # Mounts outlived the daemon; the restarted one knows them and repeats are idempotent.
        assert Path(vols["m"][2], "file").read_text() == "survives"
        for vid, staging, target, cap in vols.values():
            client.stage_publish(vid, staging, target, cap)
            stats = client.node.NodeGetVolumeStats(
                pb.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=target), timeout=30
            )
            assert not stats.volume_condition.abnormal
        for vid, staging, target, _ in vols.values():
            client.teardown(vid, staging, target)
        assert client.volume_ids() == set()
        assert kernel_leftovers(work) == ([], [])
    finally:
        client.close()
        daemon.stop()


def test_kill9_in_the_middle_of_calls(work: str) -> None:
    """Workers stage, publish, snapshot, unpublish and delete volumes in a loop while the
    daemon is killed five times at random moments; after each restart the workers' calls are
    retried until they succeed (the CO's behaviour)."""
    daemon = CsiDaemon(work)
    daemon.start()
    client = Client(daemon.endpoint)
    stop = threading.Event()
    failures: list[str] = []

    def retry(fn: object, *args: object) -> object:
        for _ in range(400):
            try:
                return fn(*args)  # type: ignore[operator]
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.ABORTED,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED,
                    grpc.StatusCode.UNKNOWN,
                ):
                    raise
                time.sleep(0.05)
        raise TimeoutError("the daemon never came back")

    def worker(n: int) -> None:
        rng = random.Random(n)  # noqa: S311 - test schedule, not secrets
        i = 0
        while not stop.is_set():
            i += 1
            cap = BLOCK if rng.random() < 0.3 else MOUNT
            name = f"w{n}-{i}"
            staging = os.path.join(work, "kubelet", f"{name}-s")
            target = os.path.join(work, "kubelet", f"{name}-t")
            os.makedirs(staging, exist_ok=True)
            try:
                vid = str(retry(client.create, name, cap))
                retry(client.stage_publish, vid, staging, target, cap)
                retry(
                    client.ctl.CreateSnapshot,
                    pb.CreateSnapshotRequest(name=f"{name}-snap", source_volume_id=vid),
                )
                retry(client.teardown, vid, staging, target)
            except Exception as exc:
                failures.append(f"{name}: {exc!r}")
                return

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(7)  # noqa: S311
        for _ in range(5):
            time.sleep(rng.uniform(0.2, 0.8))
            daemon.kill9()
            daemon.start()
        stop.set()
        for t in threads:
            t.join(120)
        assert failures == []
        # Whatever the crashes interrupted, every volume left can be torn down via the API
        # and the kernel ends with nothing of ours.
        for vid in client.volume_ids():
            resp = client.ctl.ControllerGetVolume(pb.ControllerGetVolumeRequest(volume_id=vid))
            assert not resp.status.volume_condition.abnormal
        snaps = client.ctl.ListSnapshots(pb.ListSnapshotsRequest(), timeout=30).entries
        for s in snaps:
            client.ctl.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=s.snapshot.snapshot_id))
        assert client.volume_ids() == set()
        daemon.stop()
        assert kernel_leftovers(work) == ([], [])
        root = Path(work, "root")
        assert os.listdir(root / "volumes") == []
        assert os.listdir(root / "snapshots") == []
        assert os.listdir(root / "quarantine") == []
    finally:
        stop.set()
        client.close()
        daemon.stop()
