"""The one edge of both plugins: environment and stdin in, JSON and an exit code out.

``run_bridge`` and ``run_hostlocal`` take the environment and stdin as values and return
(stdout bytes, exit code), so tests and the agent call them without a process; the
``*_main`` functions wrap them for the installed executables. Every ``CNIError`` becomes the
spec's error JSON (with its code); anything unexpected becomes code 999 with the exception
in ``details``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from cni_bridge import skel
from cni_bridge.errors import CNIError
from cni_bridge.types import Result, render

__all__ = ["bridge_main", "hostlocal_main", "run_bridge", "run_hostlocal"]


class InProcessIpam:
    """The ``Ipam`` seam over ``cni_bridge.ipam.hostlocal``, with no extra process."""

    def __init__(self, req: skel.Request) -> None:
        self.req = req

    def add(self, conf: Mapping[str, Any]) -> Result:
        from cni_bridge.ipam import hostlocal

        return hostlocal.add(conf, self.req)

    def delete(self, conf: Mapping[str, Any]) -> None:
        from cni_bridge.ipam import hostlocal

        hostlocal.delete(conf, self.req)

    def check(self, conf: Mapping[str, Any]) -> None:
        from cni_bridge.ipam import hostlocal

        hostlocal.check(conf, self.req)

    def status(self, conf: Mapping[str, Any]) -> None:
        from cni_bridge.ipam import hostlocal

        hostlocal.status(conf)

    def gc(self, conf: Mapping[str, Any]) -> None:
        from cni_bridge.ipam import hostlocal

        hostlocal.gc(conf)


def write_sysctl(path: str, value: str) -> None:
    """Write only when different: most calls find forwarding already on."""
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(value)


def _answer(fn: Callable[[], Any], version: Callable[[], str]) -> tuple[bytes, int]:
    try:
        out = fn()
    except CNIError as exc:
        return json.dumps(skel.error_json(exc, version())).encode(), 1
    except Exception as exc:
        err = CNIError(f"unexpected error: {exc.__class__.__name__}: {exc}", repr(exc))
        return json.dumps(skel.error_json(err, version())).encode(), 1
    return (json.dumps(out).encode() if out is not None else b""), 0


def run_bridge(env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
    version = [skel.LATEST]
    return _answer(lambda: _bridge(env, stdin, version), lambda: version[0])


def _bridge(env: Mapping[str, str], stdin: bytes, version: list[str]) -> Any:
    req = skel.parse_env(env)
    if req.command == "VERSION":
        return skel.version_reply(stdin)
    conf = skel.load_config(stdin)
    if conf.get("cniVersion") in skel.SUPPORTED_VERSIONS:
        version[0] = conf["cniVersion"]  # errors speak the config's version when we can
    version[0] = skel.check_version(conf.get("cniVersion"), req.command)

    from cni_bridge import bridge
    from cni_bridge.config import parse_netconf
    from cni_bridge.delegate import ExecIpam
    from cni_bridge.netlink import Rtnl, open_in_netns, open_netns
    from cni_bridge.nft import Runner
    from cni_bridge.record import RecordStore

    nc = parse_netconf(conf, version[0])
    ipam: bridge.Ipam | None = None
    if nc.in_process_ipam:
        ipam = InProcessIpam(req)
    elif nc.ipam_type:
        ipam = ExecIpam(nc.ipam_type, env, req.path)
    records = RecordStore(nc.state_dir, nc.name)
    host = Rtnl.here()
    try:
        deps = bridge.Deps(host, open_netns, open_in_netns, Runner(), ipam, write_sysctl)
        if req.command == "ADD":
            return render(bridge.add(conf, nc, req, deps, records), version[0])
        if req.command == "DEL":
            bridge.delete(conf, nc, req, deps, records)
        elif req.command == "CHECK":
            bridge.check(conf, nc, req, deps, records)
        elif req.command == "STATUS":
            bridge.status(conf, nc, deps)
        elif req.command == "GC":
            from cni_bridge.ipam.hostlocal import valid_attachments

            bridge.gc(conf, nc, valid_attachments(conf), deps, records)
        return None
    finally:
        host.close()


def run_hostlocal(env: Mapping[str, str], stdin: bytes) -> tuple[bytes, int]:
    version = [skel.LATEST]
    return _answer(lambda: _hostlocal(env, stdin, version), lambda: version[0])


def _hostlocal(env: Mapping[str, str], stdin: bytes, version: list[str]) -> Any:
    req = skel.parse_env(env)
    if req.command == "VERSION":
        return skel.version_reply(stdin)
    conf = skel.load_config(stdin)
    if conf.get("cniVersion") in skel.SUPPORTED_VERSIONS:
        version[0] = conf["cniVersion"]  # errors speak the config's version when we can
    version[0] = skel.check_version(conf.get("cniVersion"), req.command)
    from cni_bridge.ipam import hostlocal

    if req.command == "ADD":
        return render(hostlocal.add(conf, req), version[0])
    if req.command == "DEL":
        hostlocal.delete(conf, req)
    elif req.command == "CHECK":
        hostlocal.check(conf, req)
    elif req.command == "STATUS":
        hostlocal.status(conf)
    elif req.command == "GC":
        hostlocal.gc(conf)
    return None


def _exit(out: bytes, code: int) -> NoReturn:
    if out:
        os.write(1, out + b"\n")
    sys.exit(code)


def _stdin() -> bytes:
    return sys.stdin.buffer.read() if sys.stdin is not None else b""


def bridge_main() -> NoReturn:
    _exit(*run_bridge(os.environ, _stdin()))


def hostlocal_main() -> NoReturn:
    _exit(*run_hostlocal(os.environ, _stdin()))
