"""An in-memory ``Store`` for tests of the allocator and of the bridge's orchestration."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cni_bridge.ipam.store import Allocation

__all__ = ["MemStore"]


class MemStore:
    def __init__(self) -> None:
        self.held: dict[str, tuple[str, str]] = {}
        self.last: dict[int, str] = {}
        self.locked = False

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        if self.locked:
            raise RuntimeError("MemStore.lock is not reentrant (flock on a new fd is not either)")
        self.locked = True
        try:
            yield
        finally:
            self.locked = False

    def reserve(self, container_id: str, ifname: str, ip: str, range_set: int) -> bool:
        if ip in self.held:
            return False
        self.held[ip] = (container_id, ifname)
        self.last[range_set] = ip
        return True

    def last_reserved(self, range_set: int) -> str | None:
        return self.last.get(range_set)

    def release(self, ip: str) -> None:
        self.held.pop(ip, None)

    def release_by_id(self, container_id: str, ifname: str) -> list[str]:
        ips = self.get_by_id(container_id, ifname)
        for ip in ips:
            del self.held[ip]
        return ips

    def get_by_id(self, container_id: str, ifname: str) -> list[str]:
        return sorted(ip for ip, owner in self.held.items() if owner == (container_id, ifname))

    def allocations(self) -> list[Allocation]:
        return [Allocation(ip, c, i) for ip, (c, i) in sorted(self.held.items())]
