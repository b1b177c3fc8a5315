"""Per-registry host configuration: which URLs serve a registry's content, in what order.

The format follows containerd's ``hosts.toml`` (one directory per registry host under a
configuration directory, ``_default`` for every host without its own directory):

* ``server`` names the upstream; without it the image's own host is used (``docker.io`` maps to
  ``registry-1.docker.io``, loopback hosts default to plain HTTP like containerd's CRI plugin).
  Top-level ``capabilities``, ``skip_verify``, ``override_path`` and ``header`` apply to it.
* each ``[host."<url>"]`` table is a mirror, tried before the server in file order.
* ``capabilities`` (default: all) says what a host may be trusted with: ``pull`` (fetch by
  digest), ``resolve`` (turn a tag into a digest) and ``push``.
* unless ``override_path`` is true, the API root is the URL's path followed by ``/v2``; with it,
  the URL's path *is* the API root (for registries that do not live under ``/v2``).

``parse_hosts_toml`` is pure; ``load_hosts`` and ``write_mirror_config`` are the file-system shell.
Keys we do not implement (``ca``, ``client``, ``proxy``...) are rejected rather than ignored, so
a configuration never silently means less than it says.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from images.errors import RegistryError

__all__ = [
    "ALL_CAPABILITIES",
    "DEFAULT_CONFIG_DIR",
    "MIRRORED_REGISTRIES",
    "RegistryHost",
    "default_server",
    "load_hosts",
    "parse_hosts_toml",
    "render_mirror_config",
    "write_mirror_config",
]

DEFAULT_CONFIG_DIR = "/etc/stowage/certs.d"
ALL_CAPABILITIES: frozenset[str] = frozenset({"pull", "resolve", "push"})

# The public registries our test clusters pull from; tests point all of them at one local mirror.
MIRRORED_REGISTRIES: tuple[str, ...] = (
    "registry.k8s.io",
    "k8s.gcr.io",
    "gcr.io",
    "docker.io",
    "public.ecr.aws",
    "quay.io",
)

_DEFAULT_DIR = "_default"
_HOST_KEYS = frozenset({"capabilities", "skip_verify", "override_path", "header"})
_TOP_KEYS = _HOST_KEYS | {"server", "host"}


@dataclass(frozen=True)
class RegistryHost:
    """One URL that serves a registry's content, and what it may be used for."""

    url: str
    capabilities: frozenset[str] = ALL_CAPABILITIES
    skip_verify: bool = False
    override_path: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def authority(self) -> str:
        """``host[:port]`` as written in the URL, used in messages and credential look-ups."""
        return urlsplit(self.url).netloc

    @property
    def plain_http(self) -> bool:
        return self.scheme == "http"

    @property
    def api_root(self) -> str:
        """The URL that ``/<repository>/manifests/...`` is appended to."""
        parts = urlsplit(self.url)
        path = parts.path.rstrip("/")
        if not self.override_path and not path.endswith("/v2"):
            path += "/v2"
        return f"{parts.scheme}://{parts.netloc}{path}"


def default_server(host: str) -> str:
    """The upstream URL of ``host`` when no ``server`` key says otherwise."""
    if host == "docker.io":
        return "https://registry-1.docker.io"
    scheme = "http" if _is_loopback(host) else "https"
    return f"{scheme}://{host}"


def parse_hosts_toml(text: str, host: str) -> list[RegistryHost]:
    """Hosts for registry ``host`` from a hosts.toml text: mirrors in file order, then the server.

    Raises ``RegistryError`` for invalid TOML, unknown keys or ill-typed values.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"invalid TOML: {exc}") from exc
    _reject_unknown(doc, _TOP_KEYS, "top level")
    mirrors = _table(doc.get("host", {}), "host")
    result = [_host_from_table(url, _table(t, f"host {url!r}")) for url, t in mirrors.items()]
    server = doc.get("server", default_server(host))
    if not isinstance(server, str):
        raise RegistryError("server must be a string")
    upstream = _host_from_table(server, {k: v for k, v in doc.items() if k in _HOST_KEYS})
    # A server also listed as a mirror is one host, not two to retry.
    if upstream.url not in {h.url for h in result}:
        result.append(upstream)
    return result


def load_hosts(config_dir: str, host: str) -> list[RegistryHost]:
    """Hosts for registry ``host`` from ``<config_dir>/<host>/hosts.toml`` or ``_default``.

    Without either file the registry is served by its default server alone.
    """
    for name in (host, _DEFAULT_DIR):
        path = os.path.join(config_dir, name, "hosts.toml")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise RegistryError(f"{path}: {exc}") from exc
        try:
            return parse_hosts_toml(text, host)
        except RegistryError as exc:
            raise RegistryError(f"{path}: {exc}") from exc
    return [RegistryHost(url=default_server(host))]


def render_mirror_config(
    hosts: Iterable[str], mirror_url: str, *, keep_upstream: bool = False
) -> dict[str, str]:
    """hosts.toml texts (by registry host) that send every pull of ``hosts`` to ``mirror_url``.

    By default the mirror *is* the server, so nothing ever reaches the real registries (tests run
    without network, and a miss should fail fast rather than time out on the internet). The
    mirror is also listed as a ``[host]`` table: containerd 1.6 refuses a file without one, and
    the same files serve it in side-by-side benchmarks.
    """
    quoted = json.dumps(mirror_url)  # a JSON string is a valid TOML basic string
    if not keep_upstream:
        text = f'server = {quoted}\n\n[host.{quoted}]\ncapabilities = ["pull", "resolve"]\n'
        return dict.fromkeys(hosts, text)
    return {
        host: (
            f"server = {json.dumps(default_server(host))}\n\n"
            f"[host.{quoted}]\n"
            'capabilities = ["pull", "resolve"]\n'
        )
        for host in hosts
    }


def write_mirror_config(
    config_dir: str,
    hosts: Iterable[str] = MIRRORED_REGISTRIES,
    mirror_url: str = "http://127.0.0.1:5000",
    *,
    keep_upstream: bool = False,
) -> None:
    """Write ``render_mirror_config`` into ``config_dir``, one ``<host>/hosts.toml`` each."""
    for host, text in render_mirror_config(hosts, mirror_url, keep_upstream=keep_upstream).items():
        directory = os.path.join(config_dir, host)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "hosts.toml"), "w", encoding="utf-8") as f:
            f.write(text)


def _host_from_table(url: str, table: Mapping[str, Any]) -> RegistryHost:
    _reject_unknown(table, _HOST_KEYS, f"host {url!r}")
    return RegistryHost(
        url=_normalize_url(url),
        capabilities=_capabilities(table.get("capabilities")),
        skip_verify=_bool(table, "skip_verify"),
        override_path=_bool(table, "override_path"),
        headers=_headers(table.get("header", {})),
    )


def _normalize_url(url: str) -> str:
    # containerd accepts a bare "host[:port][/path]" and assumes https for it.
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(f"host URL {url!r} must be http:// or https:// with a host")
    if parts.query or parts.fragment:
        raise RegistryError(f"host URL {url!r} must not have a query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _capabilities(value: object) -> frozenset[str]:
    if value is None:
        return ALL_CAPABILITIES
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RegistryError("capabilities must be a list of strings")
    unknown = set(value) - ALL_CAPABILITIES
    if unknown:
        raise RegistryError(f"unknown capabilities {sorted(unknown)}")
    return frozenset(value)


def _bool(table: Mapping[str, Any], key: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise RegistryError(f"{key} must be true or false")
    return value


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    result: list[tuple[str, str]] = []
    for name, raw in _table(value, "header").items():
        values = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(v, str) for v in values):
            raise RegistryError(f"header {name!r} must be a string or a list of strings")
        result.extend((name, v) for v in values)
    return tuple(result)


def _table(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RegistryError(f"{what} must be a table")
    return value


def _reject_unknown(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise RegistryError(f"unsupported key(s) {unknown} at {where}")


def _is_loopback(host: str) -> bool:
    if host.startswith("["):
        name = host[1 : host.find("]")]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
