"""Per-key locks: calls on one volume (or one name) are serialised, calls on different volumes
run in parallel. Locks are created on demand and dropped when nobody holds or waits for them."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["KeyedLocks"]


class KeyedLocks:
    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, *keys: str) -> Iterator[None]:
        # Sorted and de-duplicated, so two calls that need the same keys cannot deadlock.
        ordered = sorted(set(keys))
        with contextlib.ExitStack() as stack:
            for key in ordered:
                stack.enter_context(self._one(key))
            yield

    @contextlib.contextmanager
    def _one(self, key: str) -> Iterator[None]:
        with self._mu:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        lock.acquire()
        try:
            yield
        finally:
            lock.release()
            with self._mu:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        with self._mu:
            return len(self._locks)
