"""A driver over a real root in a temporary directory, with fake mounts and loop devices (no
root needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from csi_hostpath.config import DriverConfig
from csi_hostpath.driver import Driver, open_driver
from csi_hostpath.store import AtomicDirStore
from tests.unit.csi.support import FakeLoops, FakeMounter

GI = 1 << 30


@dataclass
class Rig:
    driver: Driver
    mounter: FakeMounter
    loops: FakeLoops
    work: Path
    config: DriverConfig

    def reopen(self) -> Driver:
        """A restart: a new driver over the same root, store, mounts and loop devices."""
        return open_driver(
            self.config,
            store=AtomicDirStore(str(Path(self.config.root) / "state")),
            mounter=self.mounter,
            loops=self.loops,
        )


def make_config(work: Path, **kw: object) -> DriverConfig:
    base: dict[str, object] = {
        "node_id": "node-1",
        "root": str(work / "root"),
        "max_total_bytes": 100 * GI,
        "max_volume_bytes": 50 * GI,
        "max_volumes_per_node": 3,
        "allowed_path_prefixes": (str(work / "kubelet"),),
        "accepted_mutable_parameters": frozenset({"label"}),
    }
    base.update(kw)
    return DriverConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    (tmp_path / "kubelet").mkdir()
    config = make_config(tmp_path)
    mounter, loops = FakeMounter(), FakeLoops()
    driver = open_driver(
        config,
        store=AtomicDirStore(str(tmp_path / "root" / "state")),
        mounter=mounter,
        loops=loops,
    )
    return Rig(driver, mounter, loops, tmp_path, config)
