"""conmon, the per-container monitor: it runs ``runc create``, holds the container's stdio,
writes the CRI log and, when the container exits, an exit file. It double-forks away from us,
so containers and their logs outlive a restart of stowage-cri.

Protocol: conmon reads the number of an inherited pipe from ``_OCI_SYNCPIPE`` and writes one
JSON line to it once ``runc create`` is done: ``{"data": <container pid>}`` or, on failure,
``{"data": -1, "message": "..."}``.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from dataclasses import dataclass

from cri_shim.oci.runc import Runc, RuncError

__all__ = ["ConmonSpec", "launch"]


@dataclass(frozen=True)
class ConmonSpec:
    container_id: str
    name: str
    bundle: str
    log_path: str
    exit_dir: str
    socket_dir: str
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    cgroup_parent: str | None = None
    systemd_cgroup: bool = False


def command(spec: ConmonSpec, runc: Runc, conmon: str = "conmon") -> list[str]:
    """The conmon command line (pure: exposed for tests)."""
    args = [
        conmon,
        "--api-version",
        "1",
        "-c",
        spec.container_id,
        "-u",
        spec.container_id,
        "-n",
        spec.name,
        "-r",
        runc.binary,
        "-b",
        spec.bundle,
        "-p",
        os.path.join(spec.bundle, "pidfile"),
        "-P",
        os.path.join(spec.bundle, "conmon.pid"),
        "-l",
        f"k8s-file:{spec.log_path}",
        "--exit-dir",
        spec.exit_dir,
        "--socket-dir-path",
        spec.socket_dir,
        "--full-attach",
        "--log-level",
        "error",
        "--runtime-arg",
        f"--root={runc.root}",
        # conmon drops an "oom" marker file here when the container is OOM-killed.
        "--persist-dir",
        spec.bundle,
    ]
    if runc.systemd_cgroup:
        args += ["--runtime-arg", "--systemd-cgroup", "-s"]
    if spec.stdin:
        args.append("-i")
        if not spec.stdin_once:
            args.append("--leave-stdin-open")
    if spec.tty:
        args.append("-t")
    return args


def launch(spec: ConmonSpec, runc: Runc, timeout: float = 60.0) -> int:
    """Starts conmon, which creates (not starts) the container; returns the container's pid."""
    for d in (spec.exit_dir, spec.socket_dir, os.path.dirname(spec.log_path) or "."):
        os.makedirs(d, exist_ok=True)
    r, w = os.pipe()
    try:
        env = dict(os.environ, _OCI_SYNCPIPE=str(w))
        proc = subprocess.Popen(
            command(spec, runc),
            env=env,
            pass_fds=(w,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd=spec.bundle,  # conmon writes its "oom" marker in its working directory too
        )
        os.close(w)
        w = -1
        _, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuncError(f"conmon failed: {err.decode(errors='replace').strip()}")
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise RuncError(f"conmon gave no sync message within {timeout}s")
            chunk = os.read(r, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    try:
        msg = json.loads(buf.decode().strip().splitlines()[0])
    except (ValueError, IndexError) as exc:
        raise RuncError(f"conmon sync message is not JSON: {buf!r}") from exc
    pid = int(msg.get("data", -1))
    if pid <= 0:
        raise RuncError(str(msg.get("message") or "container create failed"))
    return pid
