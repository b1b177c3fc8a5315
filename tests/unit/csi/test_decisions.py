"""The pure decisions: sizes, idempotency of creates, attach/stage/publish plans."""

from __future__ import annotations

import pytest

from csi_hostpath import decisions as d
from csi_hostpath.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    ResourceExhausted,
)
from csi_hostpath.model import (
    AccessMode,
    AccessType,
    Attachment,
    Capability,
    NodeVolume,
    Phase,
    Publication,
    SourceKind,
    Staging,
    Volume,
)

GI = 1 << 30
MOUNT_RW = Capability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
BLOCK_RW = Capability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)


def vol(**kw: object) -> Volume:
    base: dict[str, object] = {
        "id": "v1",
        "name": "n",
        "capacity_bytes": 10 * GI,
        "access_type": AccessType.MOUNT,
        "phase": Phase.READY,
        "created_ns": 1,
    }
    base.update(kw)
    return Volume(**base)  # type: ignore[arg-type]


class TestCapacity:
    def test_required_wins(self) -> None:
        assert d.choose_capacity(5 * GI, 0, minimum=0, max_volume=100 * GI) == 5 * GI

    def test_default_when_unspecified_and_capped_by_limit(self) -> None:
        assert d.choose_capacity(0, 0, minimum=0, max_volume=100 * GI) == d.DEFAULT_VOLUME_BYTES
        assert d.choose_capacity(0, 1000, minimum=0, max_volume=100 * GI) == 1000

    def test_source_minimum(self) -> None:
        assert d.choose_capacity(1, 0, minimum=3 * GI, max_volume=100 * GI) == 3 * GI
        with pytest.raises(OutOfRange):
            d.choose_capacity(1, 2 * GI, minimum=3 * GI, max_volume=100 * GI)

    @pytest.mark.parametrize(("required", "limit"), [(-1, 0), (0, -1), (10, 5)])
    def test_invalid_ranges(self, required: int, limit: int) -> None:
        with pytest.raises(InvalidArgument):
            d.choose_capacity(required, limit, minimum=0, max_volume=100 * GI)

    def test_per_volume_maximum_is_out_of_range(self) -> None:
        with pytest.raises(OutOfRange):
            d.choose_capacity(2 * GI, 0, minimum=0, max_volume=GI)

    def test_total_is_resource_exhausted(self) -> None:
        d.reserve(5, 5, 10)
        with pytest.raises(ResourceExhausted):
            d.reserve(6, 5, 10)

    def test_expand_never_shrinks(self) -> None:
        assert d.expand_to(vol(), GI, 0, max_volume=100 * GI) == 10 * GI
        assert d.expand_to(vol(), 11 * GI, 0, max_volume=100 * GI) == 11 * GI
        with pytest.raises(OutOfRange):
            d.expand_to(vol(), 11 * GI, 0, max_volume=10 * GI)
        with pytest.raises(OutOfRange):
            d.expand_to(vol(), GI, 2 * GI, max_volume=100 * GI)

    @pytest.mark.parametrize(
        ("text", "size"), [("4096", 4096), ("1Ki", 1024), ("10Mi", 10 << 20), ("1G", 10**9)]
    )
    def test_parse_size(self, text: str, size: int) -> None:
        assert d.parse_size(text) == size

    @pytest.mark.parametrize("text", ["", "1.5Gi", "-1", "1Xi", "Gi"])
    def test_parse_size_rejects(self, text: str) -> None:
        with pytest.raises(InvalidArgument):
            d.parse_size(text)


class TestCapabilities:
    def test_multi_node_refused(self) -> None:
        cap = Capability(AccessType.MOUNT, AccessMode.MULTI_NODE_MULTI_WRITER)
        assert d.capability_problem(cap)
        with pytest.raises(InvalidArgument):
            d.validate_capabilities([cap])

    def test_mixed_types_refused(self) -> None:
        with pytest.raises(InvalidArgument):
            d.validate_capabilities([MOUNT_RW, BLOCK_RW])

    def test_empty_refused(self) -> None:
        with pytest.raises(InvalidArgument):
            d.validate_capabilities([])

    def test_block_with_mount_options_refused(self) -> None:
        cap = Capability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER, fs_type="ext4")
        assert d.capability_problem(cap)

    def test_topology(self) -> None:
        seg = {"k": "node1"}
        d.check_topology([], seg)
        d.check_topology([{"k": "node2"}, {"k": "node1"}], seg)
        with pytest.raises(ResourceExhausted):
            d.check_topology([{"k": "node2"}], seg)
        with pytest.raises(ResourceExhausted):
            d.check_topology([{"other": "x"}], seg)

    def test_mutable_parameters(self) -> None:
        d.check_mutable_parameters({}, [])
        d.check_mutable_parameters({"label": "x"}, ["label"])
        with pytest.raises(InvalidArgument):
            d.check_mutable_parameters({"XXX_FakeKey": "v"}, ["label"])


class TestReuse:
    def spec(self, **kw: object) -> d.CreateVolumeSpec:
        base: dict[str, object] = {
            "name": "n",
            "capabilities": (MOUNT_RW,),
            "required_bytes": 10 * GI,
        }
        base.update(kw)
        return d.CreateVolumeSpec(**base)  # type: ignore[arg-type]

    def test_same_request_returns_existing(self) -> None:
        v = vol()
        assert d.reuse_volume(v, self.spec(), AccessType.MOUNT) is v

    @pytest.mark.parametrize(
        "change",
        [
            {"required_bytes": 20 * GI},
            {"limit_bytes": 5 * GI, "required_bytes": 0},
            {"parameters": {"a": "b"}},
            {"source_kind": SourceKind.VOLUME, "source_id": "v0"},
        ],
    )
    def test_conflicts(self, change: dict[str, object]) -> None:
        with pytest.raises(AlreadyExists):
            d.reuse_volume(vol(), self.spec(**change), AccessType.MOUNT)

    def test_access_type_conflict(self) -> None:
        with pytest.raises(AlreadyExists):
            d.reuse_volume(vol(), self.spec(), AccessType.BLOCK)


class TestAttach:
    def plan(
        self, v: Volume, node: str = "n1", readonly: bool = False, count: int = 0, limit: int = 0
    ) -> Attachment | None:
        return d.plan_attach(
            v, node, readonly, MOUNT_RW, own_node="n1", attached_on_node=count, max_per_node=limit
        )

    def test_new_repeat_and_conflict(self) -> None:
        assert self.plan(vol()) == Attachment("n1", False)
        attached = vol(attachments=(Attachment("n1", False),))
        assert self.plan(attached) is None
        with pytest.raises(AlreadyExists):
            self.plan(attached, readonly=True)

    def test_unknown_node(self) -> None:
        with pytest.raises(NotFound):
            self.plan(vol(), node="elsewhere")

    def test_limit(self) -> None:
        with pytest.raises(ResourceExhausted):
            self.plan(vol(), count=2, limit=2)
        # A repeat of an existing attachment is not a new one: no limit applies.
        assert self.plan(vol(attachments=(Attachment("n1", False),)), count=2, limit=2) is None


class TestNodePlans:
    def test_stage_idempotent_and_elsewhere(self) -> None:
        node = NodeVolume("v1")
        assert d.plan_stage(vol(), node, "/s", MOUNT_RW) is True
        staged = NodeVolume("v1", staged=(Staging("/s", AccessType.MOUNT),))
        assert d.plan_stage(vol(), staged, "/s", MOUNT_RW) is False
        with pytest.raises(FailedPrecondition):
            d.plan_stage(vol(), staged, "/other", MOUNT_RW)

    def test_stage_wrong_type(self) -> None:
        with pytest.raises(InvalidArgument):
            d.plan_stage(vol(), NodeVolume("v1"), "/s", BLOCK_RW)

    def staged(self, *pubs: Publication) -> NodeVolume:
        return NodeVolume("v1", staged=(Staging("/s", AccessType.MOUNT),), published=pubs)

    def test_publish_needs_stage(self) -> None:
        with pytest.raises(FailedPrecondition):
            d.plan_publish(vol(), NodeVolume("v1"), "/t", MOUNT_RW, False, "/s")
        with pytest.raises(FailedPrecondition):
            d.plan_publish(vol(), self.staged(), "/t", MOUNT_RW, False, "")

    def test_ephemeral_needs_no_stage(self) -> None:
        pub = d.plan_publish(vol(ephemeral=True), NodeVolume("v1"), "/t", MOUNT_RW, False, "")
        assert pub is not None

    def test_publish_repeat_and_conflict(self) -> None:
        pub = d.plan_publish(vol(), self.staged(), "/t", MOUNT_RW, False, "/s")
        assert pub is not None
        assert d.plan_publish(vol(), self.staged(pub), "/t", MOUNT_RW, False, "/s") is None
        with pytest.raises(AlreadyExists):
            d.plan_publish(vol(), self.staged(pub), "/t", MOUNT_RW, True, "/s")

    def test_reader_mode_is_readonly(self) -> None:
        cap = Capability(AccessType.MOUNT, AccessMode.SINGLE_NODE_READER_ONLY)
        pub = d.plan_publish(vol(), self.staged(), "/t", cap, False, "/s")
        assert pub is not None
        assert pub.readonly

    def test_single_writer_second_target(self) -> None:
        cap = Capability(AccessType.MOUNT, AccessMode.SINGLE_NODE_SINGLE_WRITER)
        pub = d.plan_publish(vol(), self.staged(), "/t", cap, False, "/s")
        assert pub is not None
        with pytest.raises(FailedPrecondition):
            d.plan_publish(vol(), self.staged(pub), "/t2", cap, False, "/s")
        # A multi-writer volume may be published at several targets.
        pub2 = d.plan_publish(vol(), self.staged(), "/t", MOUNT_RW, False, "/s")
        assert pub2 is not None
        assert d.plan_publish(vol(), self.staged(pub2), "/t2", MOUNT_RW, False, "/s")

    def test_ephemeral_flag(self) -> None:
        assert d.is_ephemeral({d.EPHEMERAL_KEY: "True"})
        assert not d.is_ephemeral({})
