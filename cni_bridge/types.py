"""The CNI result as a typed record, and its JSON forms for every spec version we speak.

Pure: no I/O. ``render`` produces the exact shape a given ``cniVersion`` expects (0.3.x and
0.4.0 tag each IP with ``"version"``; 1.0.0 dropped it; 1.1.0 added route attributes), and
``parse_result`` reads any of them back (a ``prevResult``, or another IPAM plugin's output).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from cni_bridge.errors import DecodeFailure

__all__ = ["DNS", "IPConfig", "Interface", "Result", "Route", "parse_result", "render"]

Json = dict[str, Any]


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class IPConfig:
    address: str  # CIDR: the address with its subnet's prefix length
    gateway: str = ""
    interface: int | None = None

    @property
    def version(self) -> int:
        return ipaddress.ip_interface(self.address).version


@dataclass(frozen=True)
class Route:
    dst: str
    gw: str = ""
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int = 0
    scope: int | None = None


@dataclass(frozen=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def render(result: Result, cni_version: str) -> Json:
    """The result JSON for ``cni_version``; empty optional fields are left out as the
    reference plugins do (``dns`` is always present: runtimes expect the key)."""
    legacy = _version_tuple(cni_version) < (1, 0, 0)
    v110 = _version_tuple(cni_version) >= (1, 1, 0)
    out: Json = {"cniVersion": cni_version}
    if result.interfaces:
        ifaces = []
        for i in result.interfaces:
            d: Json = {"name": i.name}
            if i.mac:
                d["mac"] = i.mac
            if i.mtu and v110:
                d["mtu"] = i.mtu
            if i.sandbox:
                d["sandbox"] = i.sandbox
            ifaces.append(d)
        out["interfaces"] = ifaces
    if result.ips:
        ips = []
        for ip in result.ips:
            d = {}
            if legacy:
                d["version"] = str(ip.version)
            if ip.interface is not None:
                d["interface"] = ip.interface
            d["address"] = ip.address
            if ip.gateway:
                d["gateway"] = ip.gateway
            ips.append(d)
        out["ips"] = ips
    if result.routes:
        routes = []
        for r in result.routes:
            d = {"dst": r.dst}
            if r.gw:
                d["gw"] = r.gw
            if v110:
                for key, val in (("mtu", r.mtu), ("advmss", r.advmss), ("priority", r.priority),
                                 ("table", r.table)):
                    if val:
                        d[key] = val
                if r.scope is not None:
                    d["scope"] = r.scope
            routes.append(d)
        out["routes"] = routes
    dns: Json = {}
    if result.dns.nameservers:
        dns["nameservers"] = list(result.dns.nameservers)
    if result.dns.domain:
        dns["domain"] = result.dns.domain
    if result.dns.search:
        dns["search"] = list(result.dns.search)
    if result.dns.options:
        dns["options"] = list(result.dns.options)
    out["dns"] = dns
    return out


def _strs(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DecodeFailure(f"{what} must be a list of strings")
    return tuple(value)


def parse_dns(raw: object) -> DNS:
    if raw is None:
        return DNS()
    if not isinstance(raw, dict):
        raise DecodeFailure("dns must be an object")
    domain = raw.get("domain", "")
    if not isinstance(domain, str):
        raise DecodeFailure("dns.domain must be a string")
    return DNS(
        nameservers=_strs(raw.get("nameservers"), "dns.nameservers"),
        domain=domain,
        search=_strs(raw.get("search"), "dns.search"),
        options=_strs(raw.get("options"), "dns.options"),
    )


def parse_route(raw: object) -> Route:
    if not isinstance(raw, dict) or not isinstance(raw.get("dst"), str):
        raise DecodeFailure(f"route needs a dst: {raw!r}")
    try:
        dst = str(ipaddress.ip_network(raw["dst"], strict=False))
        gw = str(ipaddress.ip_address(raw["gw"])) if raw.get("gw") else ""
    except ValueError as exc:
        raise DecodeFailure(f"bad route {raw!r}: {exc}") from exc
    ints = {k: raw.get(k, 0) for k in ("mtu", "advmss", "priority", "table")}
    if not all(isinstance(v, int) for v in ints.values()):
        raise DecodeFailure(f"bad route {raw!r}: mtu/advmss/priority/table must be integers")
    scope = raw.get("scope")
    if scope is not None and not isinstance(scope, int):
        raise DecodeFailure(f"bad route {raw!r}: scope must be an integer")
    return Route(dst=dst, gw=gw, scope=scope, **ints)


def parse_result(raw: object) -> Result:
    """Any version's result JSON (``prevResult``, an IPAM plugin's stdout) as a ``Result``."""
    if not isinstance(raw, dict):
        raise DecodeFailure("result must be a JSON object")
    try:
        ifaces = tuple(
            Interface(
                name=str(i["name"]),
                mac=str(i.get("mac", "")),
                sandbox=str(i.get("sandbox", "")),
                mtu=int(i.get("mtu", 0)),
            )
            for i in raw.get("interfaces") or ()
        )
        ips = []
        for ip in raw.get("ips") or ():
            addr = str(ipaddress.ip_interface(ip["address"]))
            gw = str(ipaddress.ip_address(ip["gateway"])) if ip.get("gateway") else ""
            idx = ip.get("interface")
            ips.append(IPConfig(addr, gw, int(idx) if idx is not None else None))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DecodeFailure(f"malformed result: {exc}") from exc
    routes = tuple(parse_route(r) for r in raw.get("routes") or ())
    return Result(ifaces, tuple(ips), routes, parse_dns(raw.get("dns")))
