"""Address ranges and range sets, parsed from the ``ipam`` config and iterated round-robin.

Pure: no I/O. The rules follow host-local's documented behaviour so that either plugin can
take over a network's data directory: the subnet is masked to its network, ``rangeStart``
defaults to the network address + 1, ``rangeEnd`` to the last address - 1 (the IPv4
broadcast is never handed out), ``gateway`` defaults to network + 1 and is never allocated.
A range *set* is a list of ranges the attachment gets one address from; ``ranges`` is a
list of sets (one address per set: that is how dual-stack is configured).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cni_bridge.errors import InvalidConfig
from cni_bridge.types import DNS, Route, parse_dns, parse_route

__all__ = [
    "IP",
    "IPAMConfig",
    "Net",
    "Range",
    "RangeSet",
    "parse_ipam",
    "parse_range",
]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Range:
    subnet: Net
    start: IP
    end: IP
    gateway: IP | None

    def __contains__(self, ip: object) -> bool:
        return (
            isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and ip.version == self.subnet.version
            and int(self.start) <= int(ip) <= int(self.end)
        )

    def size(self) -> int:
        n = int(self.end) - int(self.start) + 1
        return n - (1 if self.gateway is not None and self.gateway in self else 0)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class RangeSet:
    ranges: tuple[Range, ...]

    @property
    def version(self) -> int:
        return self.ranges[0].subnet.version

    def find(self, ip: IP) -> Range | None:
        for r in self.ranges:
            if ip in r:
                return r
        return None

    def __contains__(self, ip: object) -> bool:
        return isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) and any(
            ip in r for r in self.ranges
        )

    def size(self) -> int:
        return sum(r.size() for r in self.ranges)

    def candidates(self, last_reserved: IP | None) -> Iterator[tuple[IP, Range]]:
        """Every allocatable address once, starting just after ``last_reserved`` (round
        robin: a released address is not handed out again until the set wraps around)."""
        gateways = {int(r.gateway) for r in self.ranges if r.gateway is not None}
        spans = [(int(r.start), int(r.end), r) for r in self.ranges]
        first, after = 0, None
        if last_reserved is not None:
            last = int(last_reserved)
            for i, (_lo, _hi, r) in enumerate(spans):
                if last_reserved in r:
                    first, after = i, last
                    break
        # Visit the rest of the first range after ``after``, the other ranges in order, then
        # the start of the first range up to and including ``after``.
        order = spans[first:] + spans[:first]
        lo0, hi0, r0 = order[0]
        pieces = [(after + 1 if after is not None else lo0, hi0, r0), *order[1:]]
        if after is not None:
            pieces.append((lo0, after, r0))
        for lo, hi, rng in pieces:
            make = type(rng.start)
            for n in range(lo, hi + 1):
                if n not in gateways:
                    yield make(n), rng

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


@dataclass(frozen=True)
class IPAMConfig:
    range_sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...] = ()
    data_dir: str = "/var/lib/cni/networks"
    requested: tuple[IP, ...] = ()
    dns: DNS = field(default_factory=DNS)


def _ip(raw: object, what: str) -> IP:
    if not isinstance(raw, str):
        raise InvalidConfig(f"{what} must be a string address")
    try:
        return ipaddress.ip_address(raw.split("/")[0])
    except ValueError as exc:
        raise InvalidConfig(f"invalid {what} {raw!r}") from exc


def parse_range(raw: Mapping[str, Any]) -> Range:
    subnet_s = raw.get("subnet")
    if not isinstance(subnet_s, str):
        raise InvalidConfig("every range needs a subnet")
    try:
        subnet = ipaddress.ip_network(subnet_s, strict=False)
    except ValueError as exc:
        raise InvalidConfig(f"invalid subnet {subnet_s!r}") from exc
    host_bits = subnet.max_prefixlen - subnet.prefixlen
    if host_bits < 2:
        raise InvalidConfig(f"network {subnet} too small to allocate from")
    first = subnet.network_address + 1
    last = subnet.broadcast_address - 1
    start = _ip(raw["rangeStart"], "rangeStart") if raw.get("rangeStart") else first
    end = _ip(raw["rangeEnd"], "rangeEnd") if raw.get("rangeEnd") else last
    gateway = _ip(raw["gateway"], "gateway") if raw.get("gateway") else first
    for what, ip in (("rangeStart", start), ("rangeEnd", end), ("gateway", gateway)):
        if ip.version != subnet.version or ip not in subnet:
            raise InvalidConfig(f"{what} {ip} is not in subnet {subnet}")
    if int(start) > int(end):
        raise InvalidConfig(f"rangeStart {start} is after rangeEnd {end}")
    return Range(subnet, start, end, gateway)


def _overlap(a: Range, b: Range) -> bool:
    return (
        a.subnet.version == b.subnet.version
        and int(a.start) <= int(b.end)
        and int(b.start) <= int(a.end)
    )


def _requested(runtime_ips: Sequence[object], args_ips: Sequence[str]) -> tuple[IP, ...]:
    out: list[IP] = []
    for item in [*runtime_ips, *args_ips]:
        ip = _ip(item, "requested IP")
        if ip not in out:
            out.append(ip)
    return tuple(out)


def parse_ipam(
    ipam: Mapping[str, Any],
    runtime_ips: Sequence[object] = (),
    args_ips: Sequence[str] = (),
) -> IPAMConfig:
    """The ``ipam`` object of a network config (``ranges`` or the legacy single-range keys),
    plus the addresses the runtime asked for (``runtimeConfig.ips``, ``CNI_ARGS IP=``)."""
    sets: list[RangeSet] = []
    raw_sets = ipam.get("ranges")
    if raw_sets is not None:
        if not isinstance(raw_sets, list) or not raw_sets:
            raise InvalidConfig("ipam.ranges must be a non-empty list of range sets")
        for raw_set in raw_sets:
            if not isinstance(raw_set, list) or not raw_set:
                raise InvalidConfig("every range set must be a non-empty list of ranges")
            if not all(isinstance(r, dict) for r in raw_set):
                raise InvalidConfig("every range must be an object")
            sets.append(RangeSet(tuple(parse_range(r) for r in raw_set)))
    if ipam.get("subnet"):
        sets.insert(0, RangeSet((parse_range(ipam),)))
    if not sets:
        raise InvalidConfig("ipam needs ranges or a subnet")
    all_ranges: list[Range] = []
    for rs in sets:
        if len({r.subnet.version for r in rs.ranges}) != 1:
            raise InvalidConfig(f"range set {rs} mixes IPv4 and IPv6")
        for r in rs.ranges:
            for other in all_ranges:
                if _overlap(r, other):
                    raise InvalidConfig(f"range {r} overlaps range {other}")
            all_ranges.append(r)
    routes_raw = ipam.get("routes") or []
    if not isinstance(routes_raw, list):
        raise InvalidConfig("ipam.routes must be a list")
    try:
        routes = tuple(parse_route(r) for r in routes_raw)
        dns = parse_dns(ipam.get("dns"))
    except Exception as exc:
        raise InvalidConfig(str(exc)) from exc
    data_dir = ipam.get("dataDir") or "/var/lib/cni/networks"
    if not isinstance(data_dir, str):
        raise InvalidConfig("ipam.dataDir must be a string")
    requested = _requested(runtime_ips, args_ips)
    for ip in requested:
        if not any(ip in rs for rs in sets):
            raise InvalidConfig(f"requested IP {ip} is not in any configured range")
    return IPAMConfig(tuple(sets), routes, data_dir, requested, dns)
