"""``make conformance-csi``: csi-sanity against a freshly started stowage-csi.

Starts ``python -m csi_hostpath.server`` with a private root, socket and path prefix in a
``stowage-csi-`` temporary directory, runs the csi-sanity binary (every spec; the node attach
limit and the mutable-parameter specs enabled), prints csi-sanity's own summary and returns its
exit status. Afterwards the daemon is stopped and every mount and loop device under the
temporary directory is released, whatever happened.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from tests.unit.csi.support import kernel_leftovers, release_kernel_resources

__all__ = ["main", "run"]

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSI_SANITY = os.path.join(TOP, ".tools", "bin", "csi-sanity")
NODE_ID = "stowage-sanity-node"


def _wait_socket(path: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"stowage-csi exited with {proc.returncode} before serving")
        time.sleep(0.05)
    raise TimeoutError(f"stowage-csi did not create {path} within {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(extra: list[str], access_type: str = "mount", sanity: str = CSI_SANITY) -> int:
    work = tempfile.mkdtemp(prefix="stowage-csi-sanity-")
    try:
        sock = os.path.join(work, "csi.sock")
        mutable = os.path.join(work, "mutable.yaml")
        with open(mutable, "w") as f:
            f.write("label: gold\n")
        log_path = os.path.join(work, "stowage-csi.log")
        daemon = [
            sys.executable,
            "-m",
            "csi_hostpath.server",
            "--endpoint",
            f"unix://{sock}",
            "--nodeid",
            NODE_ID,
            "--root",
            os.path.join(work, "root"),
            "--allowed-path-prefix",
            work,
            "--max-volumes-per-node",
            "8",
            "--accepted-mutable-parameter",
            "label",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(daemon, stdout=log, stderr=log, cwd=TOP)
        try:
            _wait_socket(sock, proc)
            cmd = [
                sanity,
                f"--csi.endpoint=unix://{sock}",
                f"--csi.mountdir={work}/mnt",
                f"--csi.stagingdir={work}/staging",
                f"--csi.testvolumemutableparameters={mutable}",
                f"--csi.testvolumeaccesstype={access_type}",
                "--csi.testnodevolumeattachlimit",
                "--ginkgo.no-color",
                *extra,
            ]
            print("+", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, check=False).returncode
        finally:
            _stop(proc)
        if rc != 0:
            with open(log_path) as f:
                print("---- stowage-csi log (tail) ----\n" + f.read()[-8000:], flush=True)
        mounts, loops = kernel_leftovers(work)
        if mounts or loops:
            print(f"csi-sanity run left mounts {mounts} and loop devices {loops}", flush=True)
            rc = rc or 1
        return rc
    finally:
        release_kernel_resources(work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--access-type", choices=("mount", "block"), default="mount")
    args, extra = parser.parse_known_args(argv)
    return run(extra, args.access_type)


if __name__ == "__main__":
    sys.exit(main())
