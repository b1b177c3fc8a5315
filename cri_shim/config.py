"""The daemon's configuration: ``/etc/stowage/config.toml``, every key optional.

Keys and defaults (documented in README.md):

    [cri]
    socket = "/run/stowage/stowage.sock"   # the CRI endpoint, created 0600 (root only)
    root = "/var/lib/stowage"              # persistent state: images, content, snapshots
    state = "/run/stowage"                 # runtime state, gone at reboot
    [images]
    registry_config_dir = "/etc/stowage/certs.d"   # <host>/hosts.toml: mirrors, plain http, TLS
    max_concurrent_downloads = 3                   # layers fetched in parallel per pull
    [log]
    level = "info"
    format = "json"                                # or "text"
"""

from __future__ import annotations

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
class LogConfig:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True)
class Config:
    cri: CriConfig = field(default_factory=CriConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    log: LogConfig = field(default_factory=LogConfig)


def _section(cls: type[Any], name: str, raw: object) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    default = cls()
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"unknown key {name}.{key}")
        expected = type(getattr(default, key))
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(f"{name}.{key} must be of type {expected.__name__}")
        values[key] = value
    return replace(default, **values)


def parse_config(text: str) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from exc
    sections = {"cri": CriConfig, "images": ImagesConfig, "log": LogConfig}
    for key in raw:
        if key not in sections:
            raise ConfigError(f"unknown section [{key}]")
    parts = {k: _section(cls, k, raw[k]) for k, cls in sections.items() if k in raw}
    cfg = Config(**parts)
    if cfg.images.max_concurrent_downloads < 1:
        raise ConfigError("images.max_concurrent_downloads must be at least 1")
    if cfg.log.format not in ("json", "text"):
        raise ConfigError('log.format must be "json" or "text"')
    return cfg


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
