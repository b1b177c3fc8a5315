"""The reference runtime for the benchmarks: Debian's containerd 1.6 on private sockets and
directories, with the same registry mirrors and CNI network stowage gets in the same run."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.harness import wait_for

__all__ = ["Containerd", "containerd"]


@dataclass(frozen=True)
class Containerd:
    endpoint: str
    pid: int


def _config(work: str, certs: str, cni_conf: str | None) -> str:
    return (
        "version = 2\n"
        f'root = "{work}/root"\nstate = "{work}/state"\n'
        f'[grpc]\n  address = "{work}/containerd.sock"\n'
        '[plugins."io.containerd.grpc.v1.cri"]\n'
        '  stream_server_address = "127.0.0.1"\n'
        '  sandbox_image = "registry.k8s.io/pause:3.9"\n'
        "  # This kernel refuses negative oom_score_adj values (see the runtime issue).\n"
        "  restrict_oom_score_adj = true\n"
        '[plugins."io.containerd.grpc.v1.cri".registry]\n'
        f'  config_path = "{certs}"\n'
        '[plugins."io.containerd.grpc.v1.cri".cni]\n'
        f'  conf_dir = "{cni_conf or work + "/net.d"}"\n  bin_dir = "/usr/lib/cni"\n'
    )


@contextlib.contextmanager
def containerd(certs: str, cni_conf: str | None = None) -> Iterator[Containerd]:
    """containerd with its CRI plugin; on exit its shims, mounts and files are gone."""
    work = tempfile.mkdtemp(prefix="stowage-bench-containerd-")
    sock = os.path.join(work, "containerd.sock")
    config = os.path.join(work, "config.toml")
    Path(config).write_text(_config(work, certs, cni_conf))
    log = open(os.path.join(work, "containerd.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["containerd", "--config", config], stdout=log, stderr=log)
    try:
        wait_for(lambda: os.path.exists(sock), 30, "containerd socket")
        yield Containerd(f"unix://{sock}", proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for p in psutil.process_iter(["name", "cmdline"]):
            cmdline = " ".join(p.info["cmdline"] or [])
            if p.info["name"] == "containerd-shim-runc-v2" and work in cmdline:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for m in sorted((m for m in mounts if m.startswith(work)), reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
