"""The allocator's one I/O seam: where reservations live. Seven methods, like host-local's
store; ``FileStore`` is the real one, ``MemStore`` the fake, and both pass the same suite
(``tests/unit/cni/store_suite.py``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Allocation", "Store"]


@dataclass(frozen=True, order=True)
class Allocation:
    ip: str
    container_id: str
    ifname: str


class Store(Protocol):
    def lock(self) -> AbstractContextManager[None]:
        """Exclusive across processes: every read-modify-write of the store runs inside."""
        ...

    def reserve(self, container_id: str, ifname: str, ip: str, range_set: int) -> bool:
        """Record ``ip`` for the attachment and remember it as the set's last reservation.
        False (and no change) when the address is already taken."""
        ...

    def last_reserved(self, range_set: int) -> str | None: ...

    def release(self, ip: str) -> None:
        """Free one address; freeing a free address is fine."""
        ...

    def release_by_id(self, container_id: str, ifname: str) -> list[str]:
        """Free every address of the attachment, returning them (none is fine)."""
        ...

    def get_by_id(self, container_id: str, ifname: str) -> list[str]: ...

    def allocations(self) -> list[Allocation]: ...
