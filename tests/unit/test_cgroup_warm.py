from __future__ import annotations

import os
from pathlib import Path

from cri_shim.cgroup_warm import AttachWarmer, procs_file

HYBRID = """\
9:name=systemd:/
8:pids:/kubepods/pod1
4:memory:/kubepods/pod1
1:cpu,cpuacct:/kubepods/pod1
0::/stowage.service
"""


def test_a_v1_controller_hierarchy_is_preferred_on_a_hybrid_host() -> None:
    assert procs_file(HYBRID) == "/sys/fs/cgroup/pids/kubepods/pod1/cgroup.procs"


def test_a_named_hierarchy_alone_is_not_used() -> None:
    text = "1:name=systemd:/a\n0::/b\n"
    assert procs_file(text, "/cg") == "/cg/b/cgroup.procs"


def test_a_v2_only_host_uses_the_unified_hierarchy() -> None:
    assert procs_file("0::/system.slice/stowage.service\n") == (
        "/sys/fs/cgroup/system.slice/stowage.service/cgroup.procs"
    )
    assert procs_file("0::/\n") == "/sys/fs/cgroup/cgroup.procs"


def test_no_cgroup_information_means_no_warm_up() -> None:
    assert procs_file("") is None
    assert procs_file("garbage\n") is None


def test_a_warm_up_in_flight_is_enough(tmp_path: Path) -> None:
    # A FIFO stands in for cgroup.procs: the write blocks until we read, as the kernel's
    # grace period would.
    fifo = tmp_path / "cgroup.procs"
    os.mkfifo(fifo)
    warmer = AttachWarmer(pid=4242)
    warmer.path = str(fifo)
    first = warmer.warm()
    assert first is not None
    assert warmer.warm() is None
    with open(fifo) as reader:
        assert reader.read() == "4242"
    first.join(10)
    assert not first.is_alive()
    assert warmer.last_error is None
    again = warmer.warm()
    assert again is not None
    with open(fifo) as reader:
        reader.read()
    again.join(10)
