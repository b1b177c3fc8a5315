"""The daemon's configuration: ``/etc/stowage/config.toml``, every key optional.

Keys and defaults (documented in README.md):

    [cri]
    socket = "/run/stowage/stowage.sock"   # the CRI endpoint, created 0600 (root only)
    root = "/var/lib/stowage"              # persistent state: images, content, snapshots
    state = "/run/stowage"                 # runtime state, gone at reboot
    [images]
    registry_config_dir = "/etc/stowage/certs.d"   # <host>/hosts.toml: mirrors, plain http, TLS
    max_concurrent_downloads = 3                   # layers fetched in parallel per pull
    [runtime]
    cgroup_driver = "cgroupfs"                     # or "systemd"; reported by RuntimeConfig
    runc = "runc"                                  # the OCI runtime binary
    conmon = "conmon"
    pause = "stowage-pause"                        # holds a pod's shared PID namespace
    restrict_oom_score_adj = false                 # clamp oom_score_adj to the daemon's own
    [runtime.handlers]                             # RuntimeClass handlers besides "runc" (the
    crun = "crun"                                  # default): name = OCI runtime binary
    [cni]
    conf_dir = "/etc/cni/net.d"                    # the first config by name is the network
    bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
    conf_template = ""                             # rendered with the kubelet's pod CIDR
    [log]
    level = "info"
    format = "json"                                # or "text"
    [streaming]
    address = "127.0.0.1"                          # Exec/Attach/PortForward URLs; loopback only
    port = 0                                       # 0: an ephemeral port
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]

DEFAULT_PATH = "/etc/stowage/config.toml"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class CriConfig:
    socket: str = "/run/stowage/stowage.sock"
    root: str = "/var/lib/stowage"
    state: str = "/run/stowage"


@dataclass(frozen=True)
class ImagesConfig:
    registry_config_dir: str = "/etc/stowage/certs.d"
    max_concurrent_downloads: int = 3


@dataclass(frozen=True)
class RuntimeSection:
    cgroup_driver: str = "cgroupfs"
    runc: str = "runc"
    conmon: str = "conmon"
    pause: str = "stowage-pause"
    restrict_oom_score_adj: bool = False
    # RuntimeClass handlers besides the default "runc" (whose binary is ``runc`` above): name
    # and binary of an OCI runtime with runc's command line (runc, crun).
    handlers: tuple[tuple[str, str], ...] = (("crun", "crun"),)


_HANDLER_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")  # a RuntimeClass handler


def _handlers(raw: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise ConfigError("[runtime.handlers] must be a table of name = binary")
    out = []
    for name, binary in raw.items():
        if not _HANDLER_NAME.match(name):
            raise ConfigError(f"runtime.handlers: {name!r} is not a valid handler name")
        if name == "runc":
            raise ConfigError('runtime.handlers: "runc" is the default handler (runtime.runc)')
        if not isinstance(binary, str) or not binary:
            raise ConfigError(f"runtime.handlers.{name} must be the runtime's binary")
        out.append((name, binary))
    return tuple(sorted(out))


@dataclass(frozen=True)
class CniSection:
    conf_dir: str = "/etc/cni/net.d"
    bin_dirs: tuple[str, ...] = ("/opt/cni/bin", "/usr/lib/cni")
    # containerd's conf_template: when the kubelet sends the node's pod CIDR
    # (UpdateRuntimeConfig) and no network config exists yet, this file, with {{.PodCIDR}}
    # replaced, becomes the pod network.
    conf_template: str = ""


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True)
class StreamingSection:
    address: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class Config:
    cri: CriConfig = field(default_factory=CriConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    cni: CniSection = field(default_factory=CniSection)
    log: LogConfig = field(default_factory=LogConfig)
    streaming: StreamingSection = field(default_factory=StreamingSection)


def _section(cls: type[Any], name: str, raw: object) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    default = cls()
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}")
        if (name, key) == ("runtime", "handlers"):
            values[key] = _handlers(value)
            continue
        expected = type(getattr(default, key))
        if expected is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}.{key} must be a list of strings")
            value = tuple(value)
        elif not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(f"{name}.{key} must be of type {expected.__name__}")
        values[key] = value
    return replace(default, **values)


def parse_config(text: str) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    sections = {
        "cri": CriConfig,
        "images": ImagesConfig,
        "runtime": RuntimeSection,
        "cni": CniSection,
        "log": LogConfig,
        "streaming": StreamingSection,
    }
    for key in raw:
        if key not in sections:
            raise ConfigError(f"unknown section [{key}]")
    parts = {k: _section(cls, k, raw[k]) for k, cls in sections.items() if k in raw}
    cfg = Config(**parts)
    if cfg.images.max_concurrent_downloads < 1:
        raise ConfigError("images.max_concurrent_downloads must be at least 1")
    if cfg.runtime.cgroup_driver not in ("cgroupfs", "systemd"):
        raise ConfigError('runtime.cgroup_driver must be "cgroupfs" or "systemd"')
    if cfg.log.format not in ("json", "text"):
        raise ConfigError('log.format must be "json" or "text"')
    if not _is_loopback(cfg.streaming.address):
        raise ConfigError("streaming.address must be a loopback address (127.0.0.1 or ::1)")
    if not 0 <= cfg.streaming.port <= 65535:
        raise ConfigError("streaming.port must be between 0 and 65535")
    return cfg


def _is_loopback(address: str) -> bool:
    # The streaming server's only credential is the URL's token: it must not leave the node.
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def load_config(path: str | None) -> Config:
    """Reads ``path``; a missing default file means all defaults, a missing named one an error."""
    target = path or DEFAULT_PATH
    try:
        with open(target) as f:
            return parse_config(f.read())
    except FileNotFoundError as exc:
        if path is None:
            return Config()
        raise ConfigError(f"config file {target} not found") from exc
