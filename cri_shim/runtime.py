"""The runtime's shared state: where things live, the in-memory index of pods and containers,
their locks and the names they reserve. The lifecycles are in ``pods.py`` and
``containers.py``; this module only holds what both need.

Locking: every pod has a lock that serialises the RPCs on that pod (and creating or removing
its containers); each container has its own lock for start, stop and status, so a long stop
does not block its neighbours. Different pods never share a lock.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from cri_shim.errors import CriError
from cri_shim.store import ContainerMeta, ContainerStatus, RecordStore, SandboxMeta, SandboxStatus

__all__ = ["Container", "Paths", "Registry", "Sandbox", "new_id"]


def new_id() -> str:
    return secrets.token_hex(32)


@dataclass(frozen=True)
class Paths:
    root: str  # persistent: records, CNI cache
    state: str  # volatile: bundles, namespaces, exit files

    @property
    def records(self) -> str:
        return os.path.join(self.root, "cri")

    @property
    def cni_cache(self) -> str:
        return os.path.join(self.root, "cni", "results")

    @property
    def pods(self) -> str:
        return os.path.join(self.state, "pods")

    @property
    def namespaces(self) -> str:
        return os.path.join(self.state, "ns")

    @property
    def bundles(self) -> str:
        return os.path.join(self.state, "containers")

    @property
    def exits(self) -> str:
        return os.path.join(self.state, "exits")

    @property
    def sockets(self) -> str:
        return os.path.join(self.state, "sockets")

    @property
    def runc_root(self) -> str:
        return os.path.join(self.state, "runc")

    def handler_root(self, handler: str) -> str:
        """The state root of a runtime handler's OCI runtime (``--root``)."""
        if handler == DEFAULT_HANDLER:
            return self.runc_root
        return os.path.join(self.state, "oci", handler)


DEFAULT_HANDLER = "runc"  # what the empty RuntimeClass handler means


@dataclass
class Sandbox:
    meta: SandboxMeta
    status: SandboxStatus
    lock: threading.RLock = field(default_factory=threading.RLock)


@dataclass
class Container:
    meta: ContainerMeta
    status: ContainerStatus
    lock: threading.RLock = field(default_factory=threading.RLock)


class Registry:
    """Pods and containers by id, and the names they hold."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.sandbox_records = RecordStore(paths.records, "sandboxes")
        self.container_records = RecordStore(paths.records, "containers")
        self._lock = threading.Lock()
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self._names: dict[str, str] = {}

    # names

    def reserve(self, name: str, obj_id: str) -> None:
        with self._lock:
            holder = self._names.get(name)
            if holder is not None and holder != obj_id:
                raise CriError(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"name {name!r} is reserved for {holder}",
                )
            self._names[name] = obj_id

    def release(self, name: str, obj_id: str) -> None:
        with self._lock:
            if self._names.get(name) == obj_id:
                del self._names[name]

    @contextlib.contextmanager
    def reserved(self, name: str, obj_id: str) -> Iterator[None]:
        """Holds ``name`` for the block; released again if the block fails."""
        self.reserve(name, obj_id)
        try:
            yield
        except BaseException:
            self.release(name, obj_id)
            raise

    # lookups: full ids, or a unique prefix (as crictl users type them)

    def _find(self, table: dict[str, object], obj_id: str) -> str | None:
        if obj_id in table:
            return obj_id
        if len(obj_id) < 3:
            return None
        with self._lock:
            matches = [k for k in table if k.startswith(obj_id)]
        return matches[0] if len(matches) == 1 else None

    def sandbox(self, obj_id: str) -> Sandbox | None:
        key = self._find(self.sandboxes, obj_id)  # type: ignore[arg-type]
        return None if key is None else self.sandboxes.get(key)

    def container(self, obj_id: str) -> Container | None:
        key = self._find(self.containers, obj_id)  # type: ignore[arg-type]
        return None if key is None else self.containers.get(key)

    def need_sandbox(self, obj_id: str) -> Sandbox:
        sb = self.sandbox(obj_id)
        if sb is None:
            raise CriError(grpc.StatusCode.NOT_FOUND, f"pod sandbox {obj_id!r} not found")
        return sb

    def need_container(self, obj_id: str) -> Container:
        c = self.container(obj_id)
        if c is None:
            raise CriError(grpc.StatusCode.NOT_FOUND, f"container {obj_id!r} not found")
        return c

    def containers_of(self, sandbox_id: str) -> list[Container]:
        with self._lock:
            return [c for c in self.containers.values() if c.meta.sandbox_id == sandbox_id]

    # records

    def add_sandbox(self, meta: SandboxMeta, status: SandboxStatus) -> Sandbox:
        self.sandbox_records.create(meta.id, meta, status)
        sb = Sandbox(meta, status)
        with self._lock:
            self.sandboxes[meta.id] = sb
        return sb

    def set_sandbox_status(self, sb: Sandbox, status: SandboxStatus) -> None:
        sb.status = self.sandbox_records.write_status(sb.meta.id, status)

    def drop_sandbox(self, sb: Sandbox) -> None:
        self.sandbox_records.delete(sb.meta.id)
        with self._lock:
            self.sandboxes.pop(sb.meta.id, None)
        self.release(sb.meta.name, sb.meta.id)

    def add_container(self, meta: ContainerMeta, status: ContainerStatus) -> Container:
        # Not synced (still atomic): only a power loss could lose a new container's record,
        # and that power loss also ends every container it could describe; the start-up
        # sweep removes the writable layer it leaves. The fsyncs would cost CreateContainer
        # a third of its time. Status changes that outlive a power loss (exits) stay synced.
        self.container_records.create(meta.id, meta, status, durable=False)
        c = Container(meta, status)
        with self._lock:
            self.containers[meta.id] = c
        return c

    def set_container_status(self, c: Container, status: ContainerStatus) -> None:
        c.status = self.container_records.write_status(c.meta.id, status)

    def drop_container(self, c: Container) -> None:
        self.container_records.delete(c.meta.id)
        with self._lock:
            self.containers.pop(c.meta.id, None)
        self.release(c.meta.name, c.meta.id)

    def load(self) -> None:
        """Start-up: every record back into memory, names reserved again."""
        for meta, status in self.sandbox_records.load_all(SandboxMeta, SandboxStatus):
            self.sandboxes[meta.id] = Sandbox(meta, status)
            self._names[meta.name] = meta.id
        for meta, status in self.container_records.load_all(ContainerMeta, ContainerStatus):
            self.containers[meta.id] = Container(meta, status)
            self._names[meta.name] = meta.id
