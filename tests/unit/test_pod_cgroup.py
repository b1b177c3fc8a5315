from __future__ import annotations

import os
from pathlib import Path

from cri_shim.stats import join_cgroup, pod_cgroup_dir


def test_the_pod_cgroup_for_each_driver() -> None:
    assert pod_cgroup_dir("/kubepods/besteffort/pod1", "cgroupfs") == "/kubepods/besteffort/pod1"
    assert pod_cgroup_dir("kubepods-besteffort-pod1.slice", "systemd") == (
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
    )
    assert pod_cgroup_dir("/kubepods.slice/kubepods-pod2.slice", "systemd") == (
        "/kubepods.slice/kubepods-pod2.slice"
    )
    assert pod_cgroup_dir("", "cgroupfs") is None
    assert pod_cgroup_dir("/", "systemd") is None


def test_joining_writes_every_hierarchy_that_has_the_cgroup(tmp_path: Path) -> None:
    # A fake /sys/fs/cgroup: cgroup.procs files stand in for the kernel's.
    for hierarchy in ("cpu,cpuacct", "memory", "pids"):
        (tmp_path / hierarchy).mkdir()
        (tmp_path / hierarchy / "cgroup.procs").write_text("")
    for hierarchy in ("cpu,cpuacct", "memory"):
        pod = tmp_path / hierarchy / "kubepods" / "pod1"
        pod.mkdir(parents=True)
        (pod / "cgroup.procs").write_text("")
    os.symlink("cpu,cpuacct", tmp_path / "cpu")
    (tmp_path / "unrelated").mkdir()
    assert join_cgroup(4242, "/kubepods/pod1", str(tmp_path)) == 2
    for hierarchy in ("cpu,cpuacct", "memory"):
        assert (tmp_path / hierarchy / "kubepods/pod1/cgroup.procs").read_text() == "4242"
    assert not (tmp_path / "pids" / "kubepods").exists(), "a missing cgroup is never made"
    assert join_cgroup(4242, "/kubepods/pod1", str(tmp_path / "nowhere")) == 0
