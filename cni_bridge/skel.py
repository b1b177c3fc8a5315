"""The CNI calling convention as pure functions: the environment variables, the config on
stdin, version negotiation and the error JSON. Shared by every plugin in the package.

What the spec asks of each verb here (and nowhere else):

* ADD and CHECK need ``CNI_CONTAINERID``, ``CNI_NETNS`` and ``CNI_IFNAME``;
* DEL needs ``CNI_CONTAINERID`` and ``CNI_IFNAME`` (the netns may be gone already);
* VERSION, STATUS and GC need none of them;
* CHECK exists from config version 0.4.0 on, STATUS and GC from 1.1.0 on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cni_bridge.errors import CNIError, DecodeFailure, IncompatibleVersion, InvalidEnvironment

__all__ = [
    "COMMANDS",
    "LATEST",
    "SUPPORTED_VERSIONS",
    "Request",
    "check_version",
    "error_json",
    "load_config",
    "parse_env",
    "version_reply",
]

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
_MIN_VERSION = {"CHECK": (0, 4, 0), "STATUS": (1, 1, 0), "GC": (1, 1, 0)}
_NEEDS = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
}
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class Request:
    """One plugin invocation, decoded from the environment."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()

    def arg(self, key: str) -> str | None:
        for k, v in self.args:
            if k == key:
                return v
        return None


def _check_ifname(name: str) -> None:
    # The kernel's own rule (dev_valid_name): at most 15 bytes, not "." or "..", no '/', ':'
    # or whitespace.
    if not name or len(name.encode()) > 15 or name in (".", ".."):
        raise InvalidEnvironment(f"invalid CNI_IFNAME {name!r}")
    if any(c in "/:" or c.isspace() for c in name):
        raise InvalidEnvironment(f"invalid CNI_IFNAME {name!r}")


def parse_env(env: Mapping[str, str]) -> Request:
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise InvalidEnvironment(f"unknown CNI_COMMAND {command!r}", "expected one of " +
                                 ", ".join(COMMANDS))
    for key in _NEEDS.get(command, ()):
        if not env.get(key):
            raise InvalidEnvironment(f"{key} is required for {command}")
    cid = env.get("CNI_CONTAINERID", "")
    if cid and (not cid[0].isalnum() or not set(cid) <= _ID_CHARS):
        raise InvalidEnvironment(f"invalid CNI_CONTAINERID {cid!r}")
    ifname = env.get("CNI_IFNAME", "")
    if ifname:
        _check_ifname(ifname)
    args: list[tuple[str, str]] = []
    for pair in filter(None, env.get("CNI_ARGS", "").split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidEnvironment(f"invalid CNI_ARGS pair {pair!r}")
        args.append((key, value))
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    return Request(command, cid, env.get("CNI_NETNS", ""), ifname, tuple(args), path)


def load_config(stdin: bytes) -> dict[str, Any]:
    try:
        conf = json.loads(stdin)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeFailure("failed to decode the network configuration", str(exc)) from exc
    if not isinstance(conf, dict):
        raise DecodeFailure("the network configuration must be a JSON object")
    return conf


def _vt(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def check_version(version: object, command: str) -> str:
    """The config's ``cniVersion`` if we speak it and it allows ``command``; else error 1."""
    if version in (None, ""):
        version = "0.1.0"  # the spec's rule for configs that predate the field
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise IncompatibleVersion(
            f"incompatible CNI versions: config is {version!r}, plugin supports "
            + ", ".join(SUPPORTED_VERSIONS)
        )
    need = _MIN_VERSION.get(command)
    if need and _vt(version) < need:
        raise IncompatibleVersion(
            f"config version {version} does not allow {command}",
            f"{command} needs cniVersion {'.'.join(map(str, need))} or later",
        )
    return version


def version_reply(stdin: bytes) -> dict[str, Any]:
    """VERSION's answer. The caller's ``cniVersion`` is echoed when we speak it, so the
    runtime sees the version it asked about; otherwise our latest."""
    version = LATEST
    try:
        conf = json.loads(stdin) if stdin.strip() else {}
        if isinstance(conf, dict) and conf.get("cniVersion") in SUPPORTED_VERSIONS:
            version = conf["cniVersion"]
    except ValueError:
        pass  # VERSION must answer even with an empty or unreadable stdin
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def error_json(err: CNIError, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": version, "code": err.code, "msg": err.msg}
    if err.details:
        out["details"] = err.details
    return out
