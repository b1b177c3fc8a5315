"""The bridge plugin's network configuration, parsed and validated (pure).

Keys and defaults are those of the reference ``bridge`` plugin, so an existing conflist
works unchanged with ``"type": "stowage-bridge"``; ``stateDir`` is ours (where attachment
records live, see ``record``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cni_bridge.errors import InvalidConfig, UnsupportedField
from cni_bridge.types import DNS, Result, parse_dns, parse_result

__all__ = ["DEFAULT_STATE_DIR", "NetConf", "PortMapping", "VlanRange", "parse_netconf"]

DEFAULT_STATE_DIR = "/var/lib/cni/stowage-bridge"
IN_PROCESS_IPAM = "stowage-host-local"


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str  # "tcp", "udp" or "sctp"
    host_ip: str = ""


@dataclass(frozen=True)
class VlanRange:
    lo: int
    hi: int


@dataclass(frozen=True)
class NetConf:
    cni_version: str
    name: str
    bridge: str = "cni0"
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    mtu: int = 0
    hairpin_mode: bool = False
    promisc_mode: bool = False
    vlan: int = 0
    vlan_trunk: tuple[VlanRange, ...] = ()
    preserve_default_vlan: bool = True
    mac_spoof_check: bool = False
    enable_dad: bool = False
    disable_container_interface: bool = False
    ipam_type: str = ""
    state_dir: str = DEFAULT_STATE_DIR
    dns: DNS = field(default_factory=DNS)
    port_mappings: tuple[PortMapping, ...] = ()
    mac: str = ""
    prev_result: Result | None = None

    @property
    def in_process_ipam(self) -> bool:
        return self.ipam_type == IN_PROCESS_IPAM

    @property
    def vlan_filtering(self) -> bool:
        return self.vlan != 0 or bool(self.vlan_trunk)


def _bool(conf: Mapping[str, Any], key: str, default: bool = False) -> bool:
    v = conf.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    # Some generators write booleans as strings (kubevirt's docs do); accept the two spellings.
    if v in ("true", "false"):
        return bool(v == "true")
    raise InvalidConfig(f"{key} must be a boolean")


def _int(conf: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    v = conf.get(key, 0) or 0
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise InvalidConfig(f"{key} must be an integer in [{lo}, {hi}]")
    return v


def _mac(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidConfig(f"{what} must be a MAC address string")
    parts = value.split(":")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError as exc:
        raise InvalidConfig(f"invalid MAC address {value!r} in {what}") from exc
    if len(parts) != 6 or any(len(p) != 2 for p in parts) or raw[0] & 1:
        raise InvalidConfig(f"invalid unicast MAC address {value!r} in {what}")
    return value.lower()


def _trunk(raw: object) -> tuple[VlanRange, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidConfig("vlanTrunk must be a list")
    out = []
    for t in raw:
        if not isinstance(t, dict):
            raise InvalidConfig("every vlanTrunk entry must be an object")
        if "id" in t:
            vid = t["id"]
            if not isinstance(vid, int) or not 1 <= vid <= 4094:
                raise InvalidConfig(f"invalid VLAN id {vid!r} in vlanTrunk (1-4094)")
            out.append(VlanRange(vid, vid))
            continue
        lo, hi = t.get("minID"), t.get("maxID")
        if not isinstance(lo, int) or not isinstance(hi, int):
            raise InvalidConfig("a vlanTrunk entry needs id, or minID and maxID")
        if not 1 <= lo <= hi <= 4094:
            raise InvalidConfig(f"invalid vlanTrunk range {lo}-{hi} (1 <= minID <= maxID <= 4094)")
        out.append(VlanRange(lo, hi))
    return tuple(out)


def _port_mappings(raw: object) -> tuple[PortMapping, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidConfig("runtimeConfig.portMappings must be a list")
    out = []
    for pm in raw:
        if not isinstance(pm, dict):
            raise InvalidConfig("every port mapping must be an object")
        hp, cp = pm.get("hostPort"), pm.get("containerPort")
        proto = str(pm.get("protocol") or "tcp").lower()
        if not isinstance(hp, int) or not isinstance(cp, int):
            raise InvalidConfig(f"port mapping {pm!r} needs integer hostPort and containerPort")
        if not (1 <= hp <= 65535 and 1 <= cp <= 65535):
            raise InvalidConfig(f"port mapping {pm!r} has a port outside 1-65535")
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidConfig(f"unsupported protocol {proto!r} in port mapping")
        host_ip = pm.get("hostIP") or ""
        if not isinstance(host_ip, str):
            raise InvalidConfig("hostIP must be a string")
        if host_ip in ("0.0.0.0", "::"):  # noqa: S104 - "any host address", not a bind
            host_ip = ""
        out.append(PortMapping(hp, cp, proto, host_ip))
    return tuple(out)


def parse_netconf(conf: Mapping[str, Any], cni_version: str) -> NetConf:
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidConfig("the network configuration needs a name")
    bridge = conf.get("bridge") or "cni0"
    if not isinstance(bridge, str) or len(bridge.encode()) > 15 or "/" in bridge:
        raise InvalidConfig(f"invalid bridge name {bridge!r}")
    ipam = conf.get("ipam") or {}
    if not isinstance(ipam, dict):
        raise InvalidConfig("ipam must be an object")
    ipam_type = ipam.get("type") or ""
    if not isinstance(ipam_type, str):
        raise InvalidConfig("ipam.type must be a string")
    runtime = conf.get("runtimeConfig") or {}
    if not isinstance(runtime, dict):
        raise InvalidConfig("runtimeConfig must be an object")
    vlan = _int(conf, "vlan", 0, 4094)
    trunk = _trunk(conf.get("vlanTrunk"))
    if vlan and trunk:
        raise InvalidConfig("cannot set vlan and vlanTrunk at the same time")
    is_default_gw = _bool(conf, "isDefaultGateway")
    is_gw = _bool(conf, "isGateway") or is_default_gw
    if vlan and is_gw:
        raise UnsupportedField("isGateway together with vlan is not supported by stowage-bridge")
    disable_ci = _bool(conf, "disableContainerInterface")
    if disable_ci and ipam_type:
        raise InvalidConfig("disableContainerInterface cannot be used with IPAM")
    mac = runtime.get("mac") or ""
    args = conf.get("args") or {}
    if not mac and isinstance(args, dict) and isinstance(args.get("cni"), dict):
        mac = args["cni"].get("mac") or ""
    prev = conf.get("prevResult")
    state_dir = conf.get("stateDir") or DEFAULT_STATE_DIR
    if not isinstance(state_dir, str):
        raise InvalidConfig("stateDir must be a string")
    try:
        dns = parse_dns(conf.get("dns"))
        prev_result = parse_result(prev) if prev is not None else None
    except Exception as exc:
        raise InvalidConfig(str(exc)) from exc
    return NetConf(
        cni_version=cni_version,
        name=name,
        bridge=bridge,
        is_gateway=is_gw,
        is_default_gateway=is_default_gw,
        force_address=_bool(conf, "forceAddress"),
        ip_masq=_bool(conf, "ipMasq"),
        mtu=_int(conf, "mtu", 0, 65535),
        hairpin_mode=_bool(conf, "hairpinMode"),
        promisc_mode=_bool(conf, "promiscMode"),
        vlan=vlan,
        vlan_trunk=trunk,
        preserve_default_vlan=_bool(conf, "preserveDefaultVlan", True),
        mac_spoof_check=_bool(conf, "macspoofchk"),
        enable_dad=_bool(conf, "enabledad"),
        disable_container_interface=disable_ci,
        ipam_type=ipam_type,
        state_dir=state_dir,
        dns=dns,
        port_mappings=_port_mappings(runtime.get("portMappings")),
        mac=_mac(mac, "runtimeConfig.mac") if mac else "",
        prev_result=prev_result,
    )
