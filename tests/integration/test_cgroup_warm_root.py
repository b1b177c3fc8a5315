from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cri_shim.cgroup_warm import AttachWarmer


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
        assert warmer.path is not None
        assert os.path.exists(warmer.path)
        thread = warmer.warm()
        assert thread is not None
        thread.join(10)
        assert warmer.last_error is None
        with open(f"/proc/{child.pid}/cgroup") as f:
            assert f.read() == before
    finally:
        child.kill()
        child.wait()
    # A process that is gone: the write fails, the warmer records it and raises nothing.
    thread = warmer.warm()
    assert thread is not None
    thread.join(10)
    assert isinstance(warmer.last_error, OSError)
