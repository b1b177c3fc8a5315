"""A crash at every step: each controller operation runs in a forked child that dies with
``os._exit`` (no cleanup, no rollback: a kill -9) just before or just after its Nth record
write, for every N. The parent then restarts the driver over the same root and checks that
recovery left a consistent state and that retrying the operation succeeds.

Node operations need real mounts to survive the crash and are covered by the root test in
tests/integration/test_csi_recovery.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from csi_hostpath.decisions import CreateVolumeSpec
from csi_hostpath.driver import Driver, open_driver
from csi_hostpath.model import AccessMode, AccessType, Capability, Phase, SourceKind
from csi_hostpath.store import AtomicDirStore
from tests.unit.csi.conftest import GI, make_config
from tests.unit.csi.support import FakeLoops, FakeMounter

MOUNT = Capability(AccessType.MOUNT, AccessMode.SINGLE_NODE_WRITER)
BLOCK = Capability(AccessType.BLOCK, AccessMode.SINGLE_NODE_WRITER)
KILLED = 137


class CrashingStore(AtomicDirStore):
    """Dies at the ``crash_at``-th write, before or after making it."""

    def __init__(self, directory: str, crash_at: int, after: bool) -> None:
        super().__init__(directory)
        self.crash_at, self.after, self.writes = crash_at, after, 0

    def _maybe_die(self, done: bool) -> None:
        if self.writes == self.crash_at and done == self.after:
            os._exit(KILLED)

    def put(self, kind: str, key: str, record: Mapping[str, Any]) -> None:
        self.writes += 1
        self._maybe_die(False)
        super().put(kind, key, record)
        self._maybe_die(True)

    def delete(self, kind: str, key: str) -> None:
        self.writes += 1
        self._maybe_die(False)
        super().delete(kind, key)
        self._maybe_die(True)


def spec(name: str, cap: Capability = MOUNT, **kw: Any) -> CreateVolumeSpec:
    return CreateVolumeSpec(name=name, capabilities=(cap,), required_bytes=GI, **kw)


def open_plain(work: Path) -> Driver:
    cfg = make_config(work)
    return open_driver(
        cfg, store=AtomicDirStore(cfg.root + "/state"), mounter=FakeMounter(), loops=FakeLoops()
    )


Op = Callable[[Driver, dict[str, str]], object]


def prepare(driver: Driver) -> dict[str, str]:
    ids: dict[str, str] = {}
    src = driver.provisioner.create_volume(spec("src"))
    (Path(driver.env.config.root) / "volumes" / src.id / "f").write_text("data")
    ids["src"] = src.id
    ids["block"] = driver.provisioner.create_volume(spec("blk", BLOCK)).id
    ids["snap"] = driver.snapshotter.create("snap", src.id, {}).id
    return ids


OPS: dict[str, Op] = {
    "create-mount": lambda d, ids: d.provisioner.create_volume(spec("new")),
    "create-block": lambda d, ids: d.provisioner.create_volume(spec("nb", BLOCK)),
    "restore": lambda d, ids: d.provisioner.create_volume(
        spec("r", source_kind=SourceKind.SNAPSHOT, source_id=ids["snap"])
    ),
    "clone": lambda d, ids: d.provisioner.create_volume(
        spec("c", source_kind=SourceKind.VOLUME, source_id=ids["src"])
    ),
    "delete-volume": lambda d, ids: d.provisioner.delete_volume(ids["src"]),
    "snapshot": lambda d, ids: d.snapshotter.create("s2", ids["src"], {}),
    "delete-snapshot": lambda d, ids: d.snapshotter.delete(ids["snap"]),
    "group": lambda d, ids: d.snapshotter.create_group("g", [ids["src"], ids["block"]], {}),
    "expand": lambda d, ids: d.provisioner.expand_volume(ids["block"], 2 * GI, 0),
}


def run_child(work: Path, ids: dict[str, str], op: Op, crash_at: int, after: bool) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        code = 0
        try:
            cfg = make_config(work)
            driver = open_driver(
                cfg,
                store=CrashingStore(cfg.root + "/state", crash_at, after),
                mounter=FakeMounter(),
                loops=FakeLoops(),
            )
            op(driver, ids)
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def check_consistent(driver: Driver) -> None:
    root = Path(driver.env.config.root)
    state = driver.env.state
    assert all(v.phase is Phase.READY for v in state.volumes.values())
    assert all(s.phase is Phase.READY for s in state.snapshots.values())
    assert all(g.phase is Phase.READY for g in state.groups.values())
    assert sorted(os.listdir(root / "volumes")) == sorted(state.volumes)
    assert sorted(e.rsplit(".", 1)[0] for e in os.listdir(root / "snapshots")) == sorted(
        state.snapshots
    )
    assert os.listdir(root / "tmp") == []
    for v in state.volumes.values():
        path = root / "volumes" / v.id
        if v.access_type is AccessType.BLOCK:
            assert path.is_file()
            assert path.stat().st_size == v.capacity_bytes
        else:
            assert path.is_dir()
    for g in state.groups.values():
        assert all(s in state.snapshots for s in g.snapshot_ids)


@pytest.mark.parametrize("name", sorted(OPS))
def test_kill_at_every_step(tmp_path: Path, name: str) -> None:
    op = OPS[name]
    crashes = 0
    for crash_at in range(1, 20):
        for after in (False, True):
            work = tmp_path / f"{crash_at}-{int(after)}"
            (work / "kubelet").mkdir(parents=True)
            ids = prepare(open_plain(work))
            code = run_child(work, ids, op, crash_at, after)
            assert code in (0, KILLED), f"the operation failed (exit {code}) before any crash"
            driver = open_plain(work)
            check_consistent(driver)
            assert (Path(driver.env.config.root) / "quarantine").exists()
            assert not os.listdir(Path(driver.env.config.root) / "quarantine")
            if code == 0:
                break
            crashes += 1
            # The CO retries: the operation completes on the recovered state.
            op(driver, ids)
            check_consistent(driver)
        else:
            continue
        break
    assert crashes >= 2, "the operation never reached a record write"
