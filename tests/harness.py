"""Processes the tests drive for real: Debian's docker-registry on loopback and a stowage-cri
daemon on a private socket. Both are context managers that stop their process and remove their
files on exit, also when the block fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

__all__ = ["Registry", "StowageDaemon", "free_port", "registry", "stowage_daemon", "wait_for"]

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRRORED_HOSTS = (
    "registry.k8s.io",
    "k8s.gcr.io",
    "gcr.io",
    "docker.io",
    "public.ecr.aws",
    "quay.io",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Registry:
    url: str  # http://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT
    storage: str


@contextlib.contextmanager
def registry() -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1, a free port and a temporary storage directory."""
    port = free_port()
    work = tempfile.mkdtemp(prefix="stowage-registry-")
    config = os.path.join(work, "config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {work}/data\n  delete:\n"
            "    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
    log = open(os.path.join(work, "registry.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(url + "/v2/", timeout=1).status_code == 200, 20, "registry")
        yield Registry(url=url, host=f"127.0.0.1:{port}", storage=f"{work}/data")
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def write_mirrors(config_dir: str, mirror_url: str) -> None:
    """Maps the public registries to ``mirror_url``, so images keep their upstream names."""
    from images.hosts import write_mirror_config

    write_mirror_config(config_dir, list(MIRRORED_HOSTS), mirror_url)


@dataclass(frozen=True)
class StowageDaemon:
    socket: str
    endpoint: str
    root: str
    registry_config_dir: str
    log_path: str


@contextlib.contextmanager
def stowage_daemon(mirror_url: str | None = None) -> Iterator[StowageDaemon]:
    """A stowage-cri with its own root, socket and registry config; removed on exit."""
    work = tempfile.mkdtemp(prefix="stowage-cri-")
    sock = os.path.join(work, "stowage.sock")
    root = os.path.join(work, "root")
    certs = os.path.join(work, "certs.d")
    os.makedirs(certs)
    if mirror_url is not None:
        write_mirrors(certs, mirror_url)
    log_path = os.path.join(work, "stowage-cri.log")
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cri_shim.server",
            "--socket",
            f"unix://{sock}",
            "--root",
            root,
            "--registry-config-dir",
            certs,
            "--log-level",
            "info",
        ],
        stdout=log,
        stderr=log,
        cwd=TOP,
    )
    try:
        wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, 30, "stowage-cri socket")
        if proc.poll() is not None:
            log.flush()
            with open(log_path) as f:
                raise RuntimeError(f"stowage-cri exited: {f.read()[-2000:]}")
        yield StowageDaemon(sock, f"unix://{sock}", root, certs, log_path)
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
