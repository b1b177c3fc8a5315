from __future__ import annotations

import os
import threading
from pathlib import Path

from cri_shim.cgroup_warm import AttachWarmer, procs_file
from tests.harness import wait_for

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


def test_requests_during_a_warm_up_fold_into_one_more(tmp_path: Path) -> None:
    # A FIFO stands in for cgroup.procs: the write blocks until we read, as the kernel's
    # grace period would.
    fifo = tmp_path / "cgroup.procs"
    os.mkfifo(fifo)
    warmer = AttachWarmer(pid=4242)
    warmer.path = str(fifo)
    try:
        warmer.warm()
        # The thread took the request and now blocks opening the FIFO: nobody reads yet.
        wait_for(lambda: not warmer._wanted.is_set(), 10, "the first warm-up to start")
        for _ in range(5):
            warmer.warm()
        fd = os.open(fifo, os.O_RDONLY)
        try:
            data = b""
            while len(data) < 8:
                chunk = os.read(fd, 8)
                if chunk:
                    data += chunk
        finally:
            os.close(fd)
        assert data == b"42424242", "the five requests made one write after the first"
        wait_for(lambda: warmer.writes == 2, 10, "warm-up write 2")
        assert warmer.last_error is None
        assert not warmer._wanted.is_set()
    finally:
        warmer.close()
    assert not [t for t in threading.enumerate() if t.name == "cgroup-warm"]
