"""runc, driven by subprocess. The only module that runs the OCI runtime binary, and the one
place its stderr is classified."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

__all__ = ["Runc", "RuncError", "RuncNotFoundError", "RuncState"]


class RuncError(Exception):
    """runc failed; the message carries runc's own words."""


class RuncNotFoundError(RuncError):
    """runc does not know the container (already deleted, or never created)."""


def classify(args: list[str], stderr: str) -> RuncError:
    """One place to turn runc's stderr into our exception classes."""
    text = stderr.strip()
    for line in reversed(text.splitlines()):
        # runc logs JSON lines with --log-format json; plain text otherwise.
        if line.startswith("{"):
            try:
                text = str(json.loads(line).get("msg", text))
                break
            except json.JSONDecodeError:
                continue
    lowered = text.lower()
    # runc: "container does not exist"; crun: "error opening file `<root>/<id>/status`"
    missing_state = "no such file or directory" in lowered and "/status" in lowered
    if "does not exist" in lowered or "container not found" in lowered or missing_state:
        return RuncNotFoundError(text)
    return RuncError(f"runc {args[0] if args else ''}: {text}")


@dataclass(frozen=True)
class RuncState:
    id: str
    pid: int
    status: str  # created, running, stopped, paused
    bundle: str


class Runc:
    def __init__(self, root: str, binary: str = "runc", systemd_cgroup: bool = False) -> None:
        self.root = root
        # conmon wants an absolute path, and a fixed one keeps PATH changes from mattering.
        self.binary = shutil.which(binary) or binary
        self.systemd_cgroup = systemd_cgroup
        os.makedirs(root, mode=0o700, exist_ok=True)

    def global_args(self) -> list[str]:
        args = [self.binary, "--root", self.root]
        if self.systemd_cgroup:
            args.append("--systemd-cgroup")
        return args

    def _run(self, *args: str, timeout: float | None = 60, input: bytes | None = None) -> bytes:
        try:
            res = subprocess.run(
                [*self.global_args(), *args],
                capture_output=True,
                timeout=timeout,
                input=input,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuncError(f"runc {args[0]} timed out after {timeout}s") from exc
        except FileNotFoundError as exc:
            raise RuncError(f"OCI runtime {self.binary} is not installed") from exc
        if res.returncode != 0:
            raise classify(list(args), res.stderr.decode(errors="replace"))
        return res.stdout

    def state(self, container_id: str) -> RuncState | None:
        try:
            out = self._run("state", container_id)
        except RuncNotFoundError:
            return None
        data: dict[str, Any] = json.loads(out)
        return RuncState(
            id=str(data["id"]),
            pid=int(data.get("pid") or 0),
            status=str(data["status"]),
            bundle=str(data.get("bundle", "")),
        )

    def start(self, container_id: str) -> None:
        self._run("start", container_id)

    def kill(self, container_id: str, signal: int, all_processes: bool = False) -> None:
        args = ["kill"]
        if all_processes:
            args.append("--all")
        self._run(*args, container_id, str(signal))

    def delete(self, container_id: str, force: bool = True) -> None:
        try:
            self._run("delete", *(["--force"] if force else []), container_id)
        except RuncNotFoundError:
            return

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        self._run("update", "--resources", "-", container_id, input=json.dumps(resources).encode())

    def exec_args(
        self, container_id: str, process_path: str, pid_file: str | None = None
    ) -> list[str]:
        args = [*self.global_args(), "exec", "--process", process_path]
        if pid_file:
            args += ["--pid-file", pid_file]
        return [*args, container_id]

    def list_ids(self) -> list[str]:
        out = self._run("list", "--format", "json")
        data = json.loads(out or b"null") or []
        return [str(c["id"]) for c in data]
