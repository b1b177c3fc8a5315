"""Root: the node side against the real kernel: bind mounts, read-only and flags, loop-backed
block volumes, symlink attacks. Every test releases its mounts and loop devices, also when it
fails, and checks that it did."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from csi_hostpath.config import DriverConfig
from csi_hostpath.decisions import CreateVolumeSpec
from csi_hostpath.driver import Driver, open_driver
from csi_hostpath.errors import FailedPrecondition, InvalidArgument
from csi_hostpath.model import AccessMode, AccessType, Capability
from tests.unit.csi.support import kernel_leftovers, release_kernel_resources

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, loop devices)"),
]

GI = 1 << 30
MOUNT = Capability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
BLOCK = Capability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)


@dataclass
class Node:
    driver: Driver
    work: Path
    pod: Path

    def volume(self, name: str, cap: Capability = MOUNT, size: int = GI) -> str:
        spec = CreateVolumeSpec(name=name, capabilities=(cap,), required_bytes=size)
        return self.driver.provisioner.create_volume(spec).id

    def data(self, volume_id: str) -> Path:
        return self.work / "root" / "volumes" / volume_id

    def staging(self, name: str = "staging") -> str:
        path = self.pod / name
        path.mkdir(exist_ok=True)
        return str(path)


@pytest.fixture
def node() -> Iterator[Node]:
    work = Path(tempfile.mkdtemp(prefix="stowage-csi-node-"))
    try:
        pod = work / "kubelet" / "pods" / "uid"
        pod.mkdir(parents=True)
        config = DriverConfig(
            node_id="node-1",
            root=str(work / "root"),
            allowed_path_prefixes=(str(work / "kubelet"),),
        )
        yield Node(open_driver(config), work, pod)
        assert kernel_leftovers(str(work)) == ([], []), "the test left mounts or loop devices"
    finally:
        release_kernel_resources(str(work))


def mount_options(path: str) -> set[str]:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                return set(fields[5].split(","))
    raise AssertionError(f"{path} is not mounted")


def test_mount_volume_lifecycle(node: Node) -> None:
    vid = node.volume("a")
    staging, target = node.staging(), str(node.pod / "target")
    pub = node.driver.publisher
    pub.stage(vid, staging, MOUNT)
    pub.publish(vid, target, staging, MOUNT, False, {})
    pub.publish(vid, target, staging, MOUNT, False, {})
    Path(target, "hello").write_text("from the pod")
    assert (node.data(vid) / "hello").read_text() == "from the pod"
    assert Path(staging, "hello").exists()
    stats = pub.stats(vid, target)
    assert stats.usage.total_bytes == GI
    assert stats.usage.used_inodes == 1
    pub.unpublish(vid, target)
    assert not os.path.exists(target)
    pub.unstage(vid, staging)
    assert kernel_leftovers(str(node.work)) == ([], [])
    node.driver.provisioner.delete_volume(vid)
    assert not node.data(vid).exists()


def test_readonly_and_flags(node: Node) -> None:
    vid = node.volume("a")
    staging = node.staging()
    cap = Capability(
        AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, mount_flags=("noexec", "nosuid")
    )
    pub = node.driver.publisher
    pub.stage(vid, staging, cap)
    ro, rw = str(node.pod / "ro"), str(node.pod / "rw")
    pub.publish(vid, ro, staging, cap, True, {})
    pub.publish(vid, rw, staging, cap, False, {})
    with pytest.raises(OSError, match="Read-only file system") as exc:
        Path(ro, "f").write_text("x")
    assert exc.value.errno == errno.EROFS
    Path(rw, "f").write_text("x")
    assert {"ro", "noexec", "nosuid"} <= mount_options(ro)
    assert {"rw", "noexec", "nosuid"} <= mount_options(rw)
    for t in (ro, rw):
        pub.unpublish(vid, t)
    pub.unstage(vid, staging)


def test_block_volume_through_a_loop_device(node: Node) -> None:
    vid = node.volume("b", BLOCK, 64 << 20)
    staging, target = node.staging(), str(node.pod / "dev")
    pub = node.driver.publisher
    pub.stage(vid, staging, BLOCK)
    pub.publish(vid, target, staging, BLOCK, False, {})
    assert stat.S_ISBLK(os.stat(target).st_mode)
    loop = node.driver.env.state.node(vid).loop_device
    assert loop.startswith("/dev/loop")
    with open(target, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"block data")
        f.flush()
        os.fsync(f.fileno())
    with open(node.data(vid), "rb") as f:
        f.seek(1 << 20)
        assert f.read(10) == b"block data"
    # Online expansion: the file grows, NodeExpandVolume makes the device see it.
    node.driver.provisioner.expand_volume(vid, 128 << 20, 0)
    pub.expand(vid, target, 128 << 20)
    sysfs = Path("/sys/block") / os.path.basename(loop) / "size"
    assert int(sysfs.read_text()) * 512 == 128 << 20
    pub.unpublish(vid, target)
    assert not os.path.exists(target)
    pub.unstage(vid, staging)
    assert kernel_leftovers(str(node.work)) == ([], [])


def test_symlink_in_target_path_is_refused(node: Node) -> None:
    vid = node.volume("a")
    staging = node.staging()
    node.driver.publisher.stage(vid, staging, MOUNT)
    elsewhere = node.work / "elsewhere"
    elsewhere.mkdir()
    (node.pod / "volumes").symlink_to(elsewhere)
    with pytest.raises(FailedPrecondition):
        node.driver.publisher.publish(
            vid, str(node.pod / "volumes" / "target"), staging, MOUNT, False, {}
        )
    assert os.listdir(elsewhere) == []
    (node.pod / "link").symlink_to(elsewhere)
    with pytest.raises(FailedPrecondition):
        node.driver.publisher.publish(vid, str(node.pod / "link"), staging, MOUNT, False, {})
    assert mount_options(staging)
    assert str(elsewhere) not in kernel_leftovers(str(node.work))[0]
    node.driver.publisher.unstage(vid, staging)


def test_symlink_planted_in_the_root_is_not_followed(node: Node) -> None:
    vid = node.volume("a")
    precious = node.work / "precious"
    precious.mkdir()
    (precious / "keep").write_text("do not touch")
    data = node.data(vid)
    os.rmdir(data)
    data.symlink_to(precious)
    with pytest.raises(FailedPrecondition):
        node.driver.publisher.stage(vid, node.staging(), MOUNT)
    assert node.driver.provisioner.get_volume(vid).abnormal
    node.driver.provisioner.delete_volume(vid)
    assert (precious / "keep").read_text() == "do not touch"
    assert not os.path.lexists(data)


def test_target_outside_allowed_prefix(node: Node) -> None:
    vid = node.volume("a")
    staging = node.staging()
    node.driver.publisher.stage(vid, staging, MOUNT)
    with pytest.raises(InvalidArgument):
        node.driver.publisher.publish(vid, str(node.work / "outside"), staging, MOUNT, False, {})
    assert not (node.work / "outside").exists()
    node.driver.publisher.unstage(vid, staging)


def test_ephemeral_inline_volume(node: Node) -> None:
    target = str(node.pod / "inline")
    ctx = {"csi.storage.k8s.io/ephemeral": "true", "size": "16Mi"}
    node.driver.publisher.publish("csi-0123abcd", target, "", MOUNT, False, ctx)
    Path(target, "f").write_text("scratch")
    assert node.data("csi-0123abcd").is_dir()
    node.driver.publisher.unpublish("csi-0123abcd", target)
    assert not node.data("csi-0123abcd").exists()
    assert node.driver.env.state.volumes == {}
