"""Hostile ids, names and paths are refused before anything is looked up or touched."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csi_hostpath.errors import InvalidArgument
from csi_hostpath.mounts import flag_bits, parse_mountinfo
from csi_hostpath.paths import check_host_path, check_id, check_name, is_valid_id, is_within

HOSTILE_IDS = [
    "..",
    ".",
    "../../etc",
    "/etc/passwd",
    "a/b",
    "a\0b",
    ".hidden",
    "-rf",
    "a" * 129,
    "vol id",
    "vol\nid",
    "\u00e9t\u00e9",
]


@pytest.mark.parametrize("value", HOSTILE_IDS)
def test_hostile_ids_refused(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidArgument):
        check_id("volume_id", value)


@given(st.text(max_size=200))
def test_any_accepted_id_is_a_single_safe_component(value: str) -> None:
    if is_valid_id(value):
        assert "/" not in value
        assert value not in (".", "..")
        assert not value.startswith((".", "-"))


def test_names() -> None:
    assert check_name("name", "x" * 128) == "x" * 128
    for bad in ["", "a\nb", "x" * 300]:
        with pytest.raises(InvalidArgument):
            check_name("name", bad)


ROOT = "/var/lib/stowage/csi"
ALLOWED = ("/var/lib/kubelet",)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "relative/path",
        "/var/lib/kubelet/../../etc",
        "/var/lib/kubelet/pods/./x",
        "/var/lib/kubelet/pods//x",
        "//var/lib/kubelet/x",
        "/",
        "/etc/passwd",
        "/var/lib/kubelet",
        "/var/lib/kubelet-evil/x",
        "/var/lib/stowage/csi/volumes/x",
        "/var/lib/stowage",
        "/var/lib/kubelet/x\0y",
    ],
)
def test_hostile_paths_refused(path: str) -> None:
    with pytest.raises(InvalidArgument):
        check_host_path("target_path", path, driver_root=ROOT, allowed=ALLOWED)


def test_good_path() -> None:
    p = "/var/lib/kubelet/pods/uid/volumes/kubernetes.io~csi/pv/mount"
    assert check_host_path("target_path", p, driver_root=ROOT, allowed=ALLOWED) == p


def test_root_inside_allowed_prefix_is_still_protected() -> None:
    with pytest.raises(InvalidArgument):
        check_host_path("t", "/tmp/x/root/volumes/v", driver_root="/tmp/x/root", allowed=["/tmp/x"])
    with pytest.raises(InvalidArgument):
        check_host_path("t", "/tmp/x", driver_root="/tmp/x/root", allowed=["/tmp"])


def test_is_within() -> None:
    assert is_within("/a/b", "/a")
    assert is_within("/a", "/a")
    assert not is_within("/ab", "/a")
    assert is_within("/x", "/")


def test_mount_flags() -> None:
    assert flag_bits(["ro", "nosuid", "nodev", "noexec"]) == 1 | 2 | 4 | 8
    with pytest.raises(InvalidArgument):
        flag_bits(["remount"])


def test_parse_mountinfo_unescapes() -> None:
    text = (
        "36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw\n"
        "37 35 98:0 / /plain rw - ext4 /dev/x rw\n"
    )
    assert parse_mountinfo(text) == ["/mnt with space", "/plain"]
