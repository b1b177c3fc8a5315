"""The driver's core over a real root in a temp dir, with fake mounts and loop devices."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from csi_hostpath.decisions import CreateVolumeSpec
from csi_hostpath.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
)
from csi_hostpath.model import AccessMode, AccessType, Capability, SourceKind, Volume
from tests.unit.csi.conftest import GI, Rig

MOUNT = Capability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
BLOCK = Capability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)


def create(rig: Rig, name: str, size: int = GI, cap: Capability = MOUNT, **kw: object) -> Volume:
    spec = CreateVolumeSpec(name=name, capabilities=(cap,), required_bytes=size, **kw)  # type: ignore[arg-type]
    return rig.driver.provisioner.create_volume(spec)


def data_path(rig: Rig, volume: Volume) -> Path:
    return Path(rig.config.root) / "volumes" / volume.id


class TestCreate:
    def test_mount_volume_is_a_directory(self, rig: Rig) -> None:
        v = create(rig, "a")
        assert data_path(rig, v).is_dir()
        assert v.capacity_bytes == GI

    def test_block_volume_is_a_sparse_file(self, rig: Rig) -> None:
        v = create(rig, "b", 10 * GI, BLOCK)
        st = data_path(rig, v).stat()
        assert st.st_size == 10 * GI
        assert st.st_blocks * 512 < GI

    def test_same_name_same_request_is_the_same_volume(self, rig: Rig) -> None:
        assert create(rig, "a").id == create(rig, "a").id

    def test_same_name_other_size_conflicts(self, rig: Rig) -> None:
        create(rig, "a")
        with pytest.raises(AlreadyExists):
            create(rig, "a", 2 * GI)

    def test_limits(self, rig: Rig) -> None:
        with pytest.raises(OutOfRange):
            create(rig, "huge", 51 * GI)
        create(rig, "a", 50 * GI)
        create(rig, "b", 40 * GI)
        with pytest.raises(ResourceExhausted):
            create(rig, "c", 20 * GI)
        cap = rig.driver.provisioner.capacity([MOUNT], None)
        assert cap.available == 10 * GI
        assert cap.maximum_volume_size == 10 * GI

    def test_requisite_topology_elsewhere(self, rig: Rig) -> None:
        other = {"topology.hostpath.csi.stowage.dev/node": "node-2"}
        with pytest.raises(ResourceExhausted):
            create(rig, "a", requisite=(other,))

    def test_unknown_sources(self, rig: Rig) -> None:
        with pytest.raises(NotFound):
            create(rig, "a", source_kind=SourceKind.SNAPSHOT, source_id="nope")
        with pytest.raises(NotFound):
            create(rig, "b", source_kind=SourceKind.VOLUME, source_id="nope")

    def test_failed_build_leaves_nothing(self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        def boom(*args: object) -> None:
            raise OSError(28, "ENOSPC")

        monkeypatch.setattr(rig.driver.env.backing, "create_volume", boom)
        with pytest.raises(OSError, match="ENOSPC"):
            create(rig, "a")
        assert rig.driver.env.state.volumes == {}
        assert os.listdir(Path(rig.config.root) / "volumes") == []
        assert rig.driver.env.state.allocated() == 0

    def test_parallel_creates_of_one_name_make_one_volume(self, rig: Rig) -> None:
        ids: list[str] = []
        threads = [
            threading.Thread(target=lambda: ids.append(create(rig, "same").id)) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 1
        assert len(rig.driver.env.state.volumes) == 1

    def test_parallel_creates_never_exceed_the_total(self, rig: Rig) -> None:
        errors: list[Exception] = []

        def one(i: int) -> None:
            try:
                create(rig, f"v{i}", 30 * GI)
            except ResourceExhausted as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(rig.driver.env.state.volumes) == 3
        assert len(errors) == 3
        assert rig.driver.env.state.allocated() <= 100 * GI


class TestDeleteExpandModify:
    def test_delete_is_idempotent(self, rig: Rig) -> None:
        v = create(rig, "a")
        rig.driver.provisioner.delete_volume(v.id)
        rig.driver.provisioner.delete_volume(v.id)
        assert not data_path(rig, v).exists()

    @pytest.mark.parametrize("bad", ["../../etc", "/etc", ""])
    def test_delete_hostile_id(self, rig: Rig, bad: str) -> None:
        with pytest.raises(InvalidArgument):
            rig.driver.provisioner.delete_volume(bad)

    def test_attached_volume_cannot_be_deleted(self, rig: Rig) -> None:
        v = create(rig, "a")
        rig.driver.provisioner.attach(v.id, "node-1", MOUNT, False)
        with pytest.raises(FailedPrecondition):
            rig.driver.provisioner.delete_volume(v.id)
        rig.driver.provisioner.detach(v.id, "node-1")
        rig.driver.provisioner.delete_volume(v.id)

    def test_attach_limit(self, rig: Rig) -> None:
        vols = [create(rig, f"v{i}") for i in range(4)]
        for v in vols[:3]:
            rig.driver.provisioner.attach(v.id, "node-1", MOUNT, False)
        with pytest.raises(ResourceExhausted):
            rig.driver.provisioner.attach(vols[3].id, "node-1", MOUNT, False)

    def test_expand_block_grows_the_file(self, rig: Rig) -> None:
        v = create(rig, "b", GI, BLOCK)
        size, node_needed = rig.driver.provisioner.expand_volume(v.id, 2 * GI, 0)
        assert (size, node_needed) == (2 * GI, True)
        assert data_path(rig, v).stat().st_size == 2 * GI
        assert rig.driver.provisioner.expand_volume(v.id, GI, 0) == (2 * GI, True)

    def test_expand_respects_total(self, rig: Rig) -> None:
        v = create(rig, "a", 30 * GI)
        create(rig, "b", 45 * GI)
        create(rig, "c", 20 * GI)
        with pytest.raises(ResourceExhausted):
            rig.driver.provisioner.expand_volume(v.id, 36 * GI, 0)
        assert rig.driver.env.state.volumes[v.id].capacity_bytes == 30 * GI

    def test_modify(self, rig: Rig) -> None:
        v = create(rig, "a")
        rig.driver.provisioner.modify_volume(v.id, {"label": "gold"})
        assert rig.driver.env.state.volumes[v.id].mutable_parameters == {"label": "gold"}
        with pytest.raises(InvalidArgument):
            rig.driver.provisioner.modify_volume(v.id, {"XXX": "y"})
        with pytest.raises(NotFound):
            rig.driver.provisioner.modify_volume("missing", {})

    def test_list_and_condition(self, rig: Rig) -> None:
        vols = sorted((create(rig, f"v{i}") for i in range(5)), key=lambda v: v.id)
        page, token = rig.driver.provisioner.list_volumes("", 2)
        assert [s.volume.id for s in page] == [v.id for v in vols[:2]]
        rig.driver.provisioner.delete_volume(vols[1].id)
        rest, last = rig.driver.provisioner.list_volumes(token, 0)
        assert [s.volume.id for s in rest] == [v.id for v in vols[2:]]
        assert last == ""
        os.rmdir(data_path(rig, vols[2]))
        st = rig.driver.provisioner.get_volume(vols[2].id)
        assert st.abnormal
        assert "missing" in st.message


class TestSnapshots:
    def test_mount_snapshot_restore_and_clone_copy_data(self, rig: Rig) -> None:
        v = create(rig, "a")
        (data_path(rig, v) / "dir").mkdir()
        (data_path(rig, v) / "dir" / "f").write_text("before")
        os.symlink("/etc/passwd", data_path(rig, v) / "link")
        snap = rig.driver.snapshotter.create("s", v.id, {})
        (data_path(rig, v) / "dir" / "f").write_text("after")
        restored = create(rig, "r", source_kind=SourceKind.SNAPSHOT, source_id=snap.id)
        assert (data_path(rig, restored) / "dir" / "f").read_text() == "before"
        assert os.readlink(data_path(rig, restored) / "link") == "/etc/passwd"
        clone = create(rig, "c", source_kind=SourceKind.VOLUME, source_id=v.id)
        assert (data_path(rig, clone) / "dir" / "f").read_text() == "after"

    def test_block_snapshot_restore(self, rig: Rig) -> None:
        v = create(rig, "b", 64 << 20, BLOCK)
        with open(data_path(rig, v), "r+b") as f:
            f.seek(32 << 20)
            f.write(b"hello")
        snap = rig.driver.snapshotter.create("s", v.id, {})
        restored = create(
            rig, "r", 128 << 20, BLOCK, source_kind=SourceKind.SNAPSHOT, source_id=snap.id
        )
        with open(data_path(rig, restored), "rb") as f:
            f.seek(32 << 20)
            assert f.read(5) == b"hello"
        assert data_path(rig, restored).stat().st_size == 128 << 20
        with pytest.raises(InvalidArgument):
            create(rig, "m", source_kind=SourceKind.SNAPSHOT, source_id=snap.id)
        with pytest.raises(OutOfRange):
            create(
                rig,
                "small",
                1 << 20,
                BLOCK,
                limit_bytes=1 << 20,
                source_kind=SourceKind.SNAPSHOT,
                source_id=snap.id,
            )

    def test_snapshot_idempotency_and_conflict(self, rig: Rig) -> None:
        a, b = create(rig, "a"), create(rig, "b")
        s1 = rig.driver.snapshotter.create("s", a.id, {})
        assert rig.driver.snapshotter.create("s", a.id, {}).id == s1.id
        with pytest.raises(AlreadyExists):
            rig.driver.snapshotter.create("s", b.id, {})
        with pytest.raises(NotFound):
            rig.driver.snapshotter.create("t", "missing", {})

    def test_list_filters_and_pages(self, rig: Rig) -> None:
        a, b = create(rig, "a"), create(rig, "b")
        snaps = [rig.driver.snapshotter.create(f"s{i}", a.id, {}) for i in range(3)]
        other = rig.driver.snapshotter.create("o", b.id, {})
        lst = rig.driver.snapshotter.list_snapshots
        assert [s.id for s in lst("", b.id, "", 0)[0]] == [other.id]
        assert [s.id for s in lst(snaps[0].id, "", "", 0)[0]] == [snaps[0].id]
        assert lst("../x", "", "", 0)[0] == []
        assert lst(snaps[0].id, b.id, "", 0)[0] == []
        page, token = lst("", a.id, "", 2)
        rest, _ = lst("", a.id, token, 0)
        assert sorted(s.id for s in page + rest) == sorted(s.id for s in snaps)

    def test_delete_snapshot(self, rig: Rig) -> None:
        v = create(rig, "a")
        s = rig.driver.snapshotter.create("s", v.id, {})
        rig.driver.snapshotter.delete(s.id)
        rig.driver.snapshotter.delete(s.id)
        assert os.listdir(Path(rig.config.root) / "snapshots") == []
        with pytest.raises(NotFound):
            rig.driver.snapshotter.get(s.id)

    def test_group_snapshot(self, rig: Rig) -> None:
        a, b = create(rig, "a"), create(rig, "b")
        group, members = rig.driver.snapshotter.create_group("g", [a.id, b.id], {})
        assert {m.source_volume_id for m in members} == {a.id, b.id}
        again, _ = rig.driver.snapshotter.create_group("g", [b.id, a.id], {})
        assert again.id == group.id
        with pytest.raises(AlreadyExists):
            rig.driver.snapshotter.create_group("g", [a.id], {})
        with pytest.raises(FailedPrecondition):
            rig.driver.snapshotter.delete(members[0].id)
        with pytest.raises(FailedPrecondition):
            rig.driver.snapshotter.get_group(group.id, [members[0].id])
        rig.driver.snapshotter.delete_group(group.id, list(group.snapshot_ids))
        rig.driver.snapshotter.delete_group(group.id, [])
        assert rig.driver.env.state.snapshots == {}
        with pytest.raises(NotFound):
            rig.driver.snapshotter.get_group(group.id, [])


class TestNode:
    def paths(self, rig: Rig) -> tuple[str, str]:
        pod = rig.work / "kubelet" / "pod"
        pod.mkdir(exist_ok=True)
        staging = pod / "staging"
        staging.mkdir(exist_ok=True)
        return str(staging), str(pod / "target")

    def test_mount_lifecycle(self, rig: Rig) -> None:
        v = create(rig, "a")
        staging, target = self.paths(rig)
        pub = rig.driver.publisher
        for _ in range(3):
            pub.stage(v.id, staging, MOUNT)
        with pytest.raises(FailedPrecondition):
            pub.publish(v.id, target, "", MOUNT, False, {})
        for _ in range(3):
            pub.publish(v.id, target, staging, MOUNT, False, {})
        assert rig.mounter.mounts[target] == [(str(data_path(rig, v)), False, 0)]
        with pytest.raises(AlreadyExists):
            pub.publish(v.id, target, staging, MOUNT, True, {})
        with pytest.raises(FailedPrecondition):
            pub.unstage(v.id, staging)
        with pytest.raises(FailedPrecondition):
            rig.driver.provisioner.delete_volume(v.id)
        for _ in range(2):
            pub.unpublish(v.id, target)
        assert not os.path.exists(target)
        pub.unstage(v.id, staging)
        pub.unstage(v.id, staging)
        assert rig.mounter.mount_points() == set()
        rig.driver.provisioner.delete_volume(v.id)

    def test_publish_outside_allowed_paths(self, rig: Rig) -> None:
        v = create(rig, "a")
        staging, _ = self.paths(rig)
        pub = rig.driver.publisher
        pub.stage(v.id, staging, MOUNT)
        for target in [
            "/etc/x",
            str(rig.work / "kubelet" / ".." / "x"),
            rig.config.root + "/volumes/x",
            "relative",
        ]:
            with pytest.raises(InvalidArgument):
                pub.publish(v.id, target, staging, MOUNT, False, {})
        assert set(rig.mounter.mount_points()) == {staging}

    def test_publish_readonly_and_flags(self, rig: Rig) -> None:
        v = create(rig, "a")
        staging, target = self.paths(rig)
        cap = Capability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, mount_flags=("noexec",))
        rig.driver.publisher.stage(v.id, staging, cap)
        rig.driver.publisher.publish(v.id, target, staging, cap, True, {})
        assert rig.mounter.mounts[target] == [(str(data_path(rig, v)), True, 8)]
        bad = Capability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER, mount_flags=("bogus",))
        with pytest.raises(InvalidArgument):
            rig.driver.publisher.publish(v.id, target + "2", staging, bad, False, {})

    def test_failed_mount_is_rolled_back(self, rig: Rig) -> None:
        v = create(rig, "a")
        staging, target = self.paths(rig)
        rig.driver.publisher.stage(v.id, staging, MOUNT)
        rig.mounter.fail_bind.add(target)
        with pytest.raises(OSError, match="injected"):
            rig.driver.publisher.publish(v.id, target, staging, MOUNT, False, {})
        assert not os.path.exists(target)
        assert rig.driver.env.state.node(v.id).published == ()

    def test_block_lifecycle_uses_one_loop_device(self, rig: Rig) -> None:
        v = create(rig, "b", GI, BLOCK)
        staging, target = self.paths(rig)
        pub = rig.driver.publisher
        pub.stage(v.id, staging, BLOCK)
        assert list(rig.loops.devices.values()) == [str(data_path(rig, v))]
        pub.publish(v.id, target, staging, BLOCK, False, {})
        assert os.path.isfile(target)
        dev = next(iter(rig.loops.devices))
        assert rig.mounter.mounts[target][0][0] == dev
        rig.driver.provisioner.expand_volume(v.id, 2 * GI, 0)
        assert pub.expand(v.id, target, 2 * GI) == 2 * GI
        assert rig.loops.refreshed == [dev]
        with pytest.raises(OutOfRange):
            pub.expand(v.id, target, 3 * GI)
        pub.unpublish(v.id, target)
        assert rig.loops.devices
        pub.unstage(v.id, staging)
        assert rig.loops.devices == {}

    def test_stats_report_the_volume(self, rig: Rig) -> None:
        v = create(rig, "a", 2 * GI)
        staging, target = self.paths(rig)
        rig.driver.publisher.stage(v.id, staging, MOUNT)
        rig.driver.publisher.publish(v.id, target, staging, MOUNT, False, {})
        (data_path(rig, v) / "blob").write_bytes(os.urandom(1 << 20))
        stats = rig.driver.publisher.stats(v.id, target)
        assert stats.usage.total_bytes == 2 * GI
        assert stats.usage.used_bytes >= 1 << 20
        assert stats.usage.used_inodes == 1
        assert not stats.abnormal
        with pytest.raises(NotFound):
            rig.driver.publisher.stats(v.id, "some/path")
        with pytest.raises(NotFound):
            rig.driver.publisher.stats("missing", target)

    def test_ephemeral_volume_lives_with_its_publication(self, rig: Rig) -> None:
        _, target = self.paths(rig)
        ctx = {"csi.storage.k8s.io/ephemeral": "true", "size": "10Mi"}
        pub = rig.driver.publisher
        pub.publish("csi-abc123", target, "", MOUNT, False, ctx)
        pub.publish("csi-abc123", target, "", MOUNT, False, ctx)
        vol = rig.driver.env.state.volumes["csi-abc123"]
        assert vol.ephemeral
        assert vol.capacity_bytes == 10 << 20
        with pytest.raises(FailedPrecondition):
            pub.publish("csi-abc123", target + "x", "", MOUNT, False, {})
        pub.unpublish("csi-abc123", target)
        assert rig.driver.env.state.volumes == {}
        assert os.listdir(Path(rig.config.root) / "volumes") == []

    def test_ephemeral_rolled_back_when_mount_fails(self, rig: Rig) -> None:
        _, target = self.paths(rig)
        rig.mounter.fail_bind.add(target)
        with pytest.raises(OSError, match="injected"):
            rig.driver.publisher.publish(
                "csi-e", target, "", MOUNT, False, {"csi.storage.k8s.io/ephemeral": "true"}
            )
        assert rig.driver.env.state.volumes == {}
        assert rig.driver.env.state.allocated() == 0

    def test_unpublish_of_unknown_target_touches_nothing(self, rig: Rig) -> None:
        _, target = self.paths(rig)
        os.mkdir(target)
        rig.driver.publisher.unpublish("whatever", target)
        assert os.path.isdir(target)


class TestRestart:
    def test_state_survives_a_restart(self, rig: Rig) -> None:
        v = create(rig, "a")
        s = rig.driver.snapshotter.create("s", v.id, {})
        staging = rig.work / "kubelet" / "st"
        staging.mkdir()
        rig.driver.publisher.stage(v.id, str(staging), MOUNT)
        driver = rig.reopen()
        assert set(driver.env.state.volumes) == {v.id}
        assert set(driver.env.state.snapshots) == {s.id}
        assert driver.env.state.node(v.id).staging(str(staging)) is not None
        assert driver.recovery == []

    def test_lost_mounts_are_dropped_and_orphans_quarantined(self, rig: Rig) -> None:
        v = create(rig, "a")
        staging = rig.work / "kubelet" / "st"
        staging.mkdir()
        rig.driver.publisher.stage(v.id, str(staging), MOUNT)
        rig.mounter.mounts.clear()  # a reboot took the mounts
        (Path(rig.config.root) / "volumes" / "stray").mkdir()
        driver = rig.reopen()
        assert driver.env.state.node(v.id).staged == ()
        assert os.listdir(Path(rig.config.root) / "quarantine")
        assert any("quarantined" in a for a in driver.recovery)
