"""Running another CNI plugin (an IPAM plugin named in our config) the way a runtime does:
same environment, the network config on stdin, a result or an error JSON on stdout."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cni_bridge.errors import CNIError, InvalidConfig, PluginNotAvailable
from cni_bridge.types import Result, parse_result

__all__ = ["ExecIpam", "find_plugin", "run_plugin"]


def find_plugin(name: str, path: Sequence[str]) -> str:
    if not name or "/" in name:
        raise InvalidConfig(f"invalid plugin type {name!r}")
    for d in path:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    raise PluginNotAvailable(f"failed to find plugin {name!r} in path {list(path)}")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def run_plugin(
    name: str, command: str, env: Mapping[str, str], stdin: bytes, path: Sequence[str]
) -> bytes:
    """The plugin's stdout on success; its error JSON raised as a ``CNIError`` otherwise."""
    exe = find_plugin(name, path)
    child_env = dict(env)
    child_env["CNI_COMMAND"] = command
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(
            exe, [exe], child_env,
            file_actions=[(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                          (os.POSIX_SPAWN_CLOSE, in_w), (os.POSIX_SPAWN_CLOSE, out_r)],
        )
    finally:
        os.close(in_r)
        os.close(out_w)
    try:
        # Configs are far smaller than a pipe buffer; still, write before reading only
        # because IPAM plugins read all of stdin before they print anything.
        data = stdin
        while data:
            data = data[os.write(in_w, data):]
    except BrokenPipeError:
        pass
    finally:
        os.close(in_w)
    out = _read_all(out_r)
    os.close(out_r)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return out
    try:
        err = json.loads(out)
        exc = CNIError(str(err.get("msg", "")), str(err.get("details", "")))
        exc.code = int(err.get("code", 999))
    except (ValueError, AttributeError, TypeError):
        exc = CNIError(f"plugin {name} failed", out.decode(errors="replace"))
    raise exc


class ExecIpam:
    """The ``Ipam`` seam over an IPAM plugin executable."""

    def __init__(self, name: str, env: Mapping[str, str], path: Sequence[str]) -> None:
        self.name = name
        self.env = env
        self.path = path

    def _stdin(self, conf: Mapping[str, Any]) -> bytes:
        return json.dumps(conf).encode()

    def add(self, conf: Mapping[str, Any]) -> Result:
        out = run_plugin(self.name, "ADD", self.env, self._stdin(conf), self.path)
        try:
            return parse_result(json.loads(out))
        except ValueError as exc:
            raise CNIError(f"IPAM plugin {self.name} printed no JSON result") from exc

    def delete(self, conf: Mapping[str, Any]) -> None:
        run_plugin(self.name, "DEL", self.env, self._stdin(conf), self.path)

    def check(self, conf: Mapping[str, Any]) -> None:
        run_plugin(self.name, "CHECK", self.env, self._stdin(conf), self.path)

    def status(self, conf: Mapping[str, Any]) -> None:
        run_plugin(self.name, "STATUS", self.env, self._stdin(conf), self.path)

    def gc(self, conf: Mapping[str, Any]) -> None:
        run_plugin(self.name, "GC", self.env, self._stdin(conf), self.path)
