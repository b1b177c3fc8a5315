from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cri_shim.cgroup_warm import AttachWarmer
from tests.harness import wait_for


@pytest.mark.root
def test_warming_moves_no_process_and_fails_quietly() -> None:
    if os.geteuid() != 0:
        pytest.skip("writes cgroup.procs: root only")
    # A child of ours, not the test process itself, is the one "moved" into its own cgroup.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with open(f"/proc/{child.pid}/cgroup") as f:
            before = f.read()
        warmer = AttachWarmer(child.pid)
        # (closed at the end: no thread of ours may outlive a test)
        assert warmer.path is not None
        assert os.path.exists(warmer.path)
        warmer.warm()
        wait_for(lambda: warmer.writes == 1, 10, "warm-up write 1")
        assert warmer.last_error is None
        with open(f"/proc/{child.pid}/cgroup") as f:
            assert f.read() == before
    finally:
        child.kill()
        child.wait()
    try:
        # A process that is gone: the write fails, the warmer records it and raises nothing.
        warmer.warm()
        wait_for(lambda: warmer.writes == 2, 10, "warm-up write 2")
        assert isinstance(warmer.last_error, OSError)
    finally:
        warmer.close()
