from __future__ import annotations

from typing import Any

import pytest

from cri_shim._pb import api_pb2 as pb
from cri_shim.spec import SpecError
from cri_shim.spec import mounts as m


def _by_dest(mounts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {x["destination"]: x for x in mounts}


def test_default_mounts_unprivileged() -> None:
    mounts = _by_dest(m.default_mounts(privileged=False))
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert mounts["/proc"]["type"] == "proc"
    assert mounts["/dev"]["type"] == "tmpfs"
    assert "mode=755" in mounts["/dev"]["options"]
    assert "newinstance" in mounts["/dev/pts"]["options"]
    assert "ptmxmode=0666" in mounts["/dev/pts"]["options"]
    assert "ro" in mounts["/sys"]["options"]
    assert mounts["/sys/fs/cgroup"]["type"] == "cgroup"
    assert "ro" in mounts["/sys/fs/cgroup"]["options"]


def test_default_mounts_privileged_sys_is_writable() -> None:
    mounts = _by_dest(m.default_mounts(privileged=True))
    assert "ro" not in mounts["/sys"]["options"]
    assert "ro" not in mounts["/sys/fs/cgroup"]["options"]


def test_pod_mounts() -> None:
    mounts = _by_dest(
        m.pod_mounts(
            hosts_path="/p/hosts",
            resolv_path="/p/resolv.conf",
            hostname_path="/p/hostname",
            shm_path="/p/shm",
            readonly=False,
        )
    )
    assert mounts["/etc/hosts"] == {
        "destination": "/etc/hosts",
        "type": "bind",
        "source": "/p/hosts",
        "options": ["rbind", "rprivate", "rw"],
    }
    assert mounts["/etc/resolv.conf"]["source"] == "/p/resolv.conf"
    assert mounts["/etc/hostname"]["source"] == "/p/hostname"
    assert mounts["/dev/shm"]["source"] == "/p/shm"
    assert "nosuid" in mounts["/dev/shm"]["options"]


def test_pod_mounts_readonly_root_makes_files_readonly_but_not_shm() -> None:
    mounts = _by_dest(
        m.pod_mounts(
            hosts_path="/p/hosts",
            resolv_path="/p/resolv.conf",
            hostname_path="",
            shm_path=None,
            readonly=True,
        )
    )
    assert "/etc/hostname" not in mounts
    assert mounts["/etc/hosts"]["options"][-1] == "ro"
    assert mounts["/dev/shm"]["options"][-1] == "rw"
    assert mounts["/dev/shm"]["source"] == "/dev/shm"  # host IPC: the host's


def _mount(**kw: Any) -> Any:
    kw.setdefault("container_path", "/data")
    kw.setdefault("host_path", "/srv/data")
    return pb.Mount(**kw)


@pytest.mark.parametrize(
    ("propagation", "option"),
    [
        (pb.PROPAGATION_PRIVATE, "rprivate"),
        (pb.PROPAGATION_HOST_TO_CONTAINER, "rslave"),
        (pb.PROPAGATION_BIDIRECTIONAL, "rshared"),
    ],
)
def test_propagation(propagation: int, option: str) -> None:
    (out,) = m.cri_mounts([_mount(propagation=propagation)])
    assert out == {
        "destination": "/data",
        "type": "bind",
        "source": "/srv/data",
        "options": ["rbind", option, "rw"],
    }


def test_readonly() -> None:
    (out,) = m.cri_mounts([_mount(readonly=True, selinux_relabel=True)])
    assert out["options"] == ["rbind", "rprivate", "ro"]


def test_recursive_read_only() -> None:
    (out,) = m.cri_mounts([_mount(readonly=True, recursive_read_only=True)])
    assert out["options"] == ["rbind", "rprivate", "ro", "rro"]


def test_recursive_read_only_needs_readonly() -> None:
    with pytest.raises(SpecError, match="requires readonly"):
        m.cri_mounts([_mount(recursive_read_only=True)])


@pytest.mark.parametrize(
    "propagation", [pb.PROPAGATION_HOST_TO_CONTAINER, pb.PROPAGATION_BIDIRECTIONAL]
)
def test_recursive_read_only_needs_private(propagation: int) -> None:
    with pytest.raises(SpecError, match="requires private propagation"):
        m.cri_mounts([_mount(readonly=True, recursive_read_only=True, propagation=propagation)])


def test_host_path_resolved_by_callback() -> None:
    (out,) = m.cri_mounts(
        [_mount(host_path="/tmp/link")], resolve_host_path=lambda p: p + "-target"
    )
    assert out["source"] == "/tmp/link-target"


@pytest.mark.parametrize(
    ("path", "clean"), [("/data/", "/data"), ("/a//b/../c", "/a/c"), ("//x", "/x")]
)
def test_destination_is_cleaned(path: str, clean: str) -> None:
    (out,) = m.cri_mounts([_mount(container_path=path)])
    assert out["destination"] == clean


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"container_path": "data"}, "must be absolute"),
        ({"container_path": "/"}, "root"),
        ({"container_path": "/x/.."}, "root"),
        ({"host_path": ""}, "host_path is empty"),
        ({"propagation": 7}, "unknown propagation"),
    ],
)
def test_invalid_mounts(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        m.cri_mounts([_mount(**kw)])


def test_id_mappings() -> None:
    mapping = pb.IDMapping(host_id=1000, container_id=0, length=65536)
    (out,) = m.cri_mounts([_mount(uidMappings=[mapping], gidMappings=[mapping])])
    assert out["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 65536}]
    assert out["gidMappings"] == out["uidMappings"]


class TestImageVolumes:
    def _image_mount(self, **kw: Any) -> Any:
        return pb.Mount(container_path="/models", image=pb.ImageSpec(image="sha256:ab"), **kw)

    def test_unsupported_without_callback(self) -> None:
        with pytest.raises(SpecError, match="image volumes are not supported"):
            m.cri_mounts([self._image_mount()])

    def test_mounted_read_only_from_callback(self) -> None:
        (out,) = m.cri_mounts(
            [self._image_mount()], image_volume_path=lambda mount: "/var/lib/stowage/iv/ab"
        )
        assert out["source"] == "/var/lib/stowage/iv/ab"
        assert out["options"] == ["rbind", "rprivate", "ro"]

    def test_host_path_and_image_are_exclusive(self) -> None:
        with pytest.raises(SpecError, match="exclusive"):
            m.cri_mounts([self._image_mount(host_path="/x")], image_volume_path=lambda _: "/y")


def _dest(path: str) -> dict[str, Any]:
    return {"destination": path, "type": "bind", "source": "/s" + path, "options": ["rbind"]}


def test_merge_request_replaces_ours_and_sorts_by_depth() -> None:
    defaults = [_dest("/proc"), _dest("/dev")]
    pod = [_dest("/etc/hosts"), _dest("/dev/shm")]
    requested = [_dest("/data/logs"), _dest("/etc/hosts"), _dest("/data"), _dest("/a/b/c")]
    merged = m.merge_mounts(defaults, pod, requested)
    assert [x["destination"] for x in merged] == [
        "/proc",
        "/dev",
        "/dev/shm",
        "/data",
        "/data/logs",
        "/etc/hosts",
        "/a/b/c",
    ]
    assert merged[5]["source"] == "/s/etc/hosts"


def test_merge_refuses_duplicate_destinations() -> None:
    with pytest.raises(SpecError, match="duplicate mount destination /data"):
        m.merge_mounts([], [], [_dest("/data"), _dest("/data")])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([["rbind", "rprivate"]], None),
        ([["rbind", "rslave"], ["rbind", "rprivate"]], "rslave"),
        ([["rbind", "rslave"], ["rbind", "rshared"]], "rshared"),
    ],
)
def test_rootfs_propagation(options: list[list[str]], expected: str | None) -> None:
    mounts = [{"destination": f"/m{i}", "options": o} for i, o in enumerate(options)]
    assert m.rootfs_propagation(mounts) == expected
