"""Single-use, expiring tokens for streaming requests.

The gRPC Exec/Attach/PortForward handlers validate a request and park it here; the URL they
return carries only the random token. The streaming server takes the request back out at most
once: a token is the whole authorisation of a streaming connection, so it is unguessable
(192 random bits), consumed on first use and forgotten after ``ttl`` seconds. The clock is
passed in, so the rules are testable without waiting.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["TokenCache", "TokenCacheFullError"]

T = TypeVar("T")


class TokenCacheFullError(Exception):
    """Too many unused tokens are outstanding (a client is asking and never connecting)."""


class TokenCache(Generic[T]):
    def __init__(self, ttl: float = 60.0, max_size: int = 1000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._lock = threading.Lock()
        # Insertion order is expiry order (one ttl for all), so expiry pops from the front.
        self._items: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def put(self, item: T, now: float) -> str:
        with self._lock:
            self._expire(now)
            if len(self._items) >= self.max_size:
                raise TokenCacheFullError(f"{self.max_size} streaming requests are outstanding")
            token = secrets.token_urlsafe(24)
            self._items[token] = (now + self.ttl, item)
            return token

    def consume(self, token: str, now: float) -> T | None:
        """The request parked under ``token``, removed; None if unknown, used or expired."""
        with self._lock:
            self._expire(now)
            entry = self._items.pop(token, None)
        if entry is None:
            return None
        deadline, item = entry
        return item if now < deadline else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self, now: float) -> None:
        while self._items:
            token, (deadline, _) = next(iter(self._items.items()))
            if deadline > now:
                return
            del self._items[token]
