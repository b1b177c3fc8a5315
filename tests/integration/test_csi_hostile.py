"""Root + daemon: hostile ids, names and paths sent over the socket get the spec's error codes
and create, delete or mount nothing outside the driver's root and the allowed directories."""

from __future__ import annotations

import os
import stat
import tempfile
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
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts)"),
]

MODE = pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER)
MOUNT = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(), access_mode=MODE)
HOSTILE = ["..", "../../etc", "/etc/passwd", "a/../../b", "x\x00y", ".", "-rf", "a" * 300]


@pytest.fixture
def env() -> Iterator[tuple[CsiDaemon, grpc.Channel, Path]]:
    work = tempfile.mkdtemp(prefix="stowage-csi-hostile-")
    os.makedirs(os.path.join(work, "kubelet"))
    daemon = CsiDaemon(work)
    try:
        daemon.start()
        channel = grpc.insecure_channel(daemon.endpoint)
        try:
            yield daemon, channel, Path(work)
        finally:
            channel.close()
    finally:
        daemon.stop()
        release_kernel_resources(work)


def code_of(call: object, request: object) -> grpc.StatusCode:
    try:
        call(request, timeout=10)  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_socket_is_root_only(env: tuple[CsiDaemon, grpc.Channel, Path]) -> None:
    daemon, _, _ = env
    assert stat.S_IMODE(os.stat(daemon.sock).st_mode) == 0o600


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_ids(env: tuple[CsiDaemon, grpc.Channel, Path], bad: str) -> None:
    _, channel, work = env
    ctl, node = pb_grpc.ControllerStub(channel), pb_grpc.NodeStub(channel)
    before = sorted(os.listdir("/"))
    target = str(work / "kubelet" / "t")
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(ctl.DeleteVolume, pb.DeleteVolumeRequest(volume_id=bad)) == invalid
    assert code_of(ctl.DeleteSnapshot, pb.DeleteSnapshotRequest(snapshot_id=bad)) == invalid
    assert code_of(ctl.ControllerGetVolume, pb.ControllerGetVolumeRequest(volume_id=bad)) == invalid
    assert (
        code_of(
            node.NodePublishVolume,
            pb.NodePublishVolumeRequest(
                volume_id=bad,
                target_path=target,
                volume_capability=MOUNT,
                volume_context={"csi.storage.k8s.io/ephemeral": "true"},
            ),
        )
        == invalid
    )
    assert (
        code_of(
            node.NodeUnpublishVolume,
            pb.NodeUnpublishVolumeRequest(volume_id=bad, target_path=target),
        )
        == invalid
    )
    req = pb.CreateVolumeRequest(name="n", volume_capabilities=[MOUNT])
    req.volume_content_source.volume.volume_id = bad
    assert code_of(ctl.CreateVolume, req) == invalid
    snaps = ctl.ListSnapshots(pb.ListSnapshotsRequest(snapshot_id=bad), timeout=10)
    assert list(snaps.entries) == []
    assert sorted(os.listdir("/")) == before
    assert not os.path.exists(target)
    assert os.listdir(work / "root" / "volumes") == []


def test_hostile_names_are_data_not_paths(env: tuple[CsiDaemon, grpc.Channel, Path]) -> None:
    _, channel, work = env
    ctl = pb_grpc.ControllerStub(channel)
    for name in ["../../escape", "/etc/passwd", "a/b"]:
        vol = ctl.CreateVolume(pb.CreateVolumeRequest(name=name, volume_capabilities=[MOUNT]))
        assert "/" not in vol.volume.volume_id
    assert not Path(work, "escape").exists()
    assert len(os.listdir(work / "root" / "volumes")) == 3
    bad = pb.CreateVolumeRequest(name="a\nb", volume_capabilities=[MOUNT])
    assert code_of(ctl.CreateVolume, bad) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "target", ["/etc/stowage-pwned", "/tmp/../etc/x", "relative", "/var/lib/kubelet-x/y", "/"]
)
def test_hostile_target_paths(env: tuple[CsiDaemon, grpc.Channel, Path], target: str) -> None:
    _, channel, work = env
    ctl, node = pb_grpc.ControllerStub(channel), pb_grpc.NodeStub(channel)
    vid = ctl.CreateVolume(
        pb.CreateVolumeRequest(name="v", volume_capabilities=[MOUNT])
    ).volume.volume_id
    staging = work / "kubelet" / "s"
    staging.mkdir()
    node.NodeStageVolume(
        pb.NodeStageVolumeRequest(
            volume_id=vid, staging_target_path=str(staging), volume_capability=MOUNT
        )
    )
    code = code_of(
        node.NodePublishVolume,
        pb.NodePublishVolumeRequest(
            volume_id=vid,
            staging_target_path=str(staging),
            target_path=target,
            volume_capability=MOUNT,
        ),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert not os.path.exists("/etc/stowage-pwned")
    # The driver's own root is never a valid target, even under an allowed prefix.
    inside = str(work / "root" / "volumes" / vid)
    code = code_of(
        node.NodePublishVolume,
        pb.NodePublishVolumeRequest(
            volume_id=vid,
            staging_target_path=str(staging),
            target_path=inside,
            volume_capability=MOUNT,
        ),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    node.NodeUnstageVolume(
        pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=str(staging))
    )
    assert kernel_leftovers(str(work)) == ([], [])


def test_bad_pagination_token_is_aborted(env: tuple[CsiDaemon, grpc.Channel, Path]) -> None:
    _, channel, _ = env
    ctl = pb_grpc.ControllerStub(channel)
    for token in ["invalid-token", "c1.AAAA", "\u2603" * 10]:
        assert code_of(ctl.ListVolumes, pb.ListVolumesRequest(starting_token=token)) == (
            grpc.StatusCode.ABORTED
        )
        assert code_of(ctl.ListSnapshots, pb.ListSnapshotsRequest(starting_token=token)) == (
            grpc.StatusCode.ABORTED
        )
