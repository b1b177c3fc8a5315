"""The embedded record store: one small JSON file per record, written atomically.

A write goes to a unique temporary file in the same directory, is fsynced, renamed over the
record with ``os.replace`` and the directory is fsynced: at any instant (kill -9, power loss)
a record is either its old or its new version, never a mix. One file per record keeps a write
proportional to what changed, and lets writes to different volumes proceed in parallel.
Loading never raises for a bad record: it is moved to ``quarantine/`` and reported, so one
corrupt file cannot keep the driver from starting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["KINDS", "AtomicDirStore", "MemoryStore", "RecordStore"]

log = logging.getLogger("stowage.csi")

KINDS = ("volumes", "snapshots", "groups", "node")


class RecordStore(Protocol):
    def put(self, kind: str, key: str, record: Mapping[str, Any]) -> None: ...

    def delete(self, kind: str, key: str) -> None: ...

    def load(self, kind: str) -> dict[str, dict[str, Any]]:
        """Every readable record of ``kind`` by key (unreadable ones are quarantined)."""
        ...


class AtomicDirStore:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        for kind in (*KINDS, "quarantine"):
            os.makedirs(os.path.join(directory, kind), mode=0o700, exist_ok=True)

    def _dir(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        return os.path.join(self.directory, kind)

    def put(self, kind: str, key: str, record: Mapping[str, Any]) -> None:
        directory = self._dir(kind)
        data = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        tmp = os.path.join(directory, f".{key}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(directory, f"{key}.json"))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)

    def delete(self, kind: str, key: str) -> None:
        directory = self._dir(kind)
        try:
            os.unlink(os.path.join(directory, f"{key}.json"))
        except FileNotFoundError:
            return
        _fsync_dir(directory)

    def load(self, kind: str) -> dict[str, dict[str, Any]]:
        directory = self._dir(kind)
        records: dict[str, dict[str, Any]] = {}
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            if entry.endswith(".tmp"):
                # A write that never reached its rename: the old record (if any) is current.
                with contextlib.suppress(OSError):
                    os.unlink(path)
                continue
            key = entry.removesuffix(".json")
            try:
                with open(path, "rb") as f:
                    record = json.load(f)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except (OSError, ValueError) as exc:
                self.quarantine(kind, entry, f"unreadable record: {exc}")
                continue
            records[key] = record
        return records

    def quarantine(self, kind: str, entry: str, reason: str) -> None:
        src = os.path.join(self._dir(kind), entry)
        dst = os.path.join(self.directory, "quarantine", f"{kind}-{entry}-{uuid.uuid4().hex[:8]}")
        log.error("quarantining record", extra={"record": src, "reason": reason})
        with contextlib.suppress(OSError):
            os.replace(src, dst)


class MemoryStore:
    """The fake: records in a dict, with an optional hook that fails chosen writes."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in KINDS}
        self.fail_put: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def put(self, kind: str, key: str, record: Mapping[str, Any]) -> None:
        if (kind, key) in self.fail_put:
            raise OSError(28, "No space left on device (injected)")
        with self._lock:
            self.records[kind][key] = json.loads(json.dumps(record))

    def delete(self, kind: str, key: str) -> None:
        with self._lock:
            self.records[kind].pop(key, None)

    def load(self, kind: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self.records[kind].items()}


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
