"""``stowage-host-local``: the IPAM verbs over the allocator and a ``FileStore``.

The bridge calls these functions in-process when its ``ipam.type`` is ``stowage-host-local``
(no second process, no second JSON round trip); ``cni_bridge.main.hostlocal_main`` exposes
the same functions as a plugin executable for any other CNI plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cni_bridge.errors import InvalidConfig, PluginNotAvailable, UnknownContainer
from cni_bridge.ipam import allocator
from cni_bridge.ipam.filestore import FileStore
from cni_bridge.ipam.ranges import IPAMConfig, parse_ipam
from cni_bridge.ipam.store import Store
from cni_bridge.skel import Request
from cni_bridge.types import Result

__all__ = ["StoreFactory", "add", "check", "delete", "gc", "parse", "status", "valid_attachments"]

StoreFactory = Callable[[IPAMConfig, str], Store]


def file_store(conf: IPAMConfig, network: str) -> Store:
    return FileStore(conf.data_dir, network)


def _network(conf: Mapping[str, Any]) -> str:
    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidConfig("the network configuration needs a name")
    return name


def parse(conf: Mapping[str, Any], req: Request | None = None) -> IPAMConfig:
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict):
        raise InvalidConfig("the network configuration needs an ipam object")
    runtime = conf.get("runtimeConfig") or {}
    runtime_ips = runtime.get("ips") or [] if isinstance(runtime, dict) else []
    args = conf.get("args") or {}
    cni_args = args.get("cni") if isinstance(args, dict) else None
    if isinstance(cni_args, dict) and isinstance(cni_args.get("ips"), list):
        runtime_ips = [*runtime_ips, *cni_args["ips"]]
    args_ips: list[str] = []
    if req is not None:
        raw = req.arg("IP")
        if raw:
            args_ips = [s for s in raw.split(",") if s]
    if not isinstance(runtime_ips, list):
        raise InvalidConfig("runtimeConfig.ips must be a list")
    return parse_ipam(ipam, runtime_ips, args_ips)


def add(conf: Mapping[str, Any], req: Request, stores: StoreFactory = file_store) -> Result:
    ipam = parse(conf, req)
    store = stores(ipam, _network(conf))
    ips = allocator.allocate(ipam, store, req.container_id, req.ifname)
    return Result(ips=tuple(ips), routes=ipam.routes, dns=ipam.dns)


def delete(conf: Mapping[str, Any], req: Request, stores: StoreFactory = file_store) -> None:
    # Parse without requested IPs: DEL must work even if the runtime's arguments changed.
    ipam = parse(conf)
    allocator.release(stores(ipam, _network(conf)), req.container_id, req.ifname)


def check(conf: Mapping[str, Any], req: Request, stores: StoreFactory = file_store) -> None:
    ipam = parse(conf)
    if not allocator.held(stores(ipam, _network(conf)), req.container_id, req.ifname):
        raise UnknownContainer(
            f"no IP addresses are allocated to {req.container_id}/{req.ifname}"
        )


def valid_attachments(conf: Mapping[str, Any]) -> set[tuple[str, str]]:
    raw = conf.get("cni.dev/valid-attachments")
    if raw is None:
        raise InvalidConfig("GC needs cni.dev/valid-attachments")
    if not isinstance(raw, list):
        raise InvalidConfig("cni.dev/valid-attachments must be a list")
    out = set()
    for a in raw:
        if not isinstance(a, dict) or not isinstance(a.get("containerID"), str):
            raise InvalidConfig(f"invalid attachment {a!r} in cni.dev/valid-attachments")
        out.add((a["containerID"], str(a.get("ifname", ""))))
    return out


def gc(conf: Mapping[str, Any], stores: StoreFactory = file_store) -> None:
    ipam = parse(conf)
    allocator.collect_garbage(stores(ipam, _network(conf)), valid_attachments(conf))


def status(conf: Mapping[str, Any], stores: StoreFactory = file_store) -> None:
    """Available while the store can be locked and some range set has a free address."""
    ipam = parse(conf)
    store = stores(ipam, _network(conf))
    with store.lock():
        used = [a.ip for a in store.allocations()]
    for rs in ipam.range_sets:
        taken = sum(1 for ip in used if allocator.parse_ip(ip) in rs)
        if taken >= rs.size():
            raise PluginNotAvailable(f"range set {rs} has no free address")
