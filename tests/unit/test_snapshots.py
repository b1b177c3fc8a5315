from __future__ import annotations

import os

import pytest

from images.errors import ImageError, ImageNotFoundError
from images.mount import Mount, overlay_mount
from images.snapshots import Snapshotter

C1 = "sha256:" + "1" * 64
C2 = "sha256:" + "2" * 64


def test_overlay_mount_shapes() -> None:
    assert overlay_mount(["/l1"]) == Mount("bind", "/l1", ("ro", "rbind"))
    ro = overlay_mount(["/l2", "/l1"])
    assert ro.options == ("ro", "lowerdir=/l2:/l1")
    rw = overlay_mount(["/l2", "/l1"], "/u", "/w")
    assert rw.type == "overlay"
    assert "lowerdir=/l2:/l1" in rw.options
    assert "upperdir=/u" in rw.options
    assert "workdir=/w" in rw.options
    assert overlay_mount([], "/u", "/w") == Mount("bind", "/u", ("rw", "rbind"))
    with pytest.raises(ImageError):
        overlay_mount([])


def test_extract_commits_only_on_success(tmp_path: str) -> None:
    snaps = Snapshotter(str(tmp_path))

    def failing_unpack() -> None:
        with snaps.extract(C1, None) as target:
            assert target is not None
            open(os.path.join(target, "f"), "w").close()
            raise RuntimeError("unpack failed")

    with pytest.raises(RuntimeError):
        failing_unpack()
    assert not snaps.has_layer(C1)
    assert os.listdir(tmp_path / "tmp") == []
    with snaps.extract(C1, None) as target:
        assert target is not None
    with snaps.extract(C1, None) as again:
        assert again is None
    with snaps.extract(C2, C1) as target:
        assert target is not None
    assert snaps.lowerdirs(C2) == [snaps.layer_dir(C2) + "/fs", snaps.layer_dir(C1) + "/fs"]


def test_writable_layer_lifecycle(tmp_path: str) -> None:
    snaps = Snapshotter(str(tmp_path))
    with pytest.raises(ImageNotFoundError):
        snaps.prepare("c1", C1)
    with snaps.extract(C1, None):
        pass
    mounts = snaps.prepare("c1", C1)
    assert mounts == snaps.prepare("c1", C1)
    assert snaps.active() == {"c1": C1}
    snaps.remove("c1")
    snaps.remove("c1")
    assert snaps.active() == {}
    with pytest.raises(ImageError, match="invalid snapshot key"):
        snaps.prepare("../x", C1)
    with pytest.raises(ImageError, match="invalid chain id"):
        snaps.has_layer("sha256:../../x")
