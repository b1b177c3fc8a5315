"""Theory of operation: one address per range set for each attachment (container id +
interface), chosen round-robin, recorded in a ``Store`` under its lock.

* A requested address (``runtimeConfig.ips``, ``CNI_ARGS IP=``) is taken for the set that
  contains it, or the call fails: a runtime that asks for an address must get that address.
* An attachment that already holds an address in a set is refused (the reference does the
  same): a repeated ADD without DEL is a runtime bug we report rather than hide.
* All sets are reserved in one locked section; if any fails, the ones reserved so far in this
  call are released before the error leaves, so a failed ADD holds no address.
* Release is by attachment and tolerates nothing being held (DEL is idempotent).
"""

from __future__ import annotations

import ipaddress

from cni_bridge.errors import AddressExhausted, AddressInUse
from cni_bridge.ipam.ranges import IP, IPAMConfig, RangeSet
from cni_bridge.ipam.store import Allocation, Store
from cni_bridge.types import IPConfig

__all__ = ["allocate", "collect_garbage", "held", "parse_ip", "release"]


def parse_ip(ip: str) -> IP | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _pick(rs: RangeSet, idx: int, store: Store, cid: str, ifname: str) -> IPConfig:
    last = parse_ip(store.last_reserved(idx) or "")
    for ip, rng in rs.candidates(last):
        if store.reserve(cid, ifname, str(ip), idx):
            gw = str(rng.gateway) if rng.gateway is not None else ""
            return IPConfig(f"{ip}/{rng.subnet.prefixlen}", gw)
    raise AddressExhausted(f"no IP addresses available in range set: {rs}")


def allocate(conf: IPAMConfig, store: Store, cid: str, ifname: str) -> list[IPConfig]:
    out: list[IPConfig] = []
    with store.lock():
        mine = {ip for ip in (parse_ip(s) for s in store.get_by_id(cid, ifname)) if ip}
        try:
            for idx, rs in enumerate(conf.range_sets):
                dup = [ip for ip in mine if ip in rs]
                if dup:
                    raise AddressInUse(
                        f"{cid}/{ifname} already holds {dup[0]} in range set {rs}",
                        "duplicate allocation is not allowed: DEL the attachment first",
                    )
                wanted = [ip for ip in conf.requested if ip in rs]
                if len(wanted) > 1:
                    raise AddressInUse(f"more than one requested IP in range set {rs}")
                if wanted:
                    rng = rs.find(wanted[0])
                    if rng is None:  # wanted[0] in rs says otherwise; keep mypy honest
                        raise AddressInUse(f"requested IP {wanted[0]} is in no range")
                    if not store.reserve(cid, ifname, str(wanted[0]), idx):
                        raise AddressInUse(f"requested IP {wanted[0]} is already allocated")
                    gw = str(rng.gateway) if rng.gateway is not None else ""
                    out.append(IPConfig(f"{wanted[0]}/{rng.subnet.prefixlen}", gw))
                else:
                    out.append(_pick(rs, idx, store, cid, ifname))
        except BaseException:
            for got in out:
                store.release(got.address.split("/")[0])
            raise
    return out


def release(store: Store, cid: str, ifname: str) -> list[str]:
    with store.lock():
        return store.release_by_id(cid, ifname)


def held(store: Store, cid: str, ifname: str) -> list[str]:
    with store.lock():
        return store.get_by_id(cid, ifname)


def collect_garbage(store: Store, valid: set[tuple[str, str]]) -> list[Allocation]:
    """Free every allocation whose attachment is not in ``valid``; returns what was freed."""
    freed = []
    with store.lock():
        for a in store.allocations():
            # An allocation without an ifname predates per-interface records: it is valid if
            # its container has any valid attachment.
            ok = (a.container_id, a.ifname) in valid if a.ifname else any(
                c == a.container_id for c, _ in valid
            )
            if not ok:
                store.release(a.ip)
                freed.append(a)
    return freed
