"""Persistent records of pods and containers.

Theory of operation: each object has a directory ``<root>/<kind>/<id>/`` with ``meta.json``,
written once when the object is created (its CRI config and what was decided for it), and
``status.json``, rewritten atomically with a version number on every change. The directory is
created under a temporary name and renamed into place once ``meta.json`` is in it, so an object
is either fully recorded or absent. At start-up everything is loaded back; a directory that
does not load is quarantined (renamed aside) and reported, never fatal.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from images.atomic import atomic_write, fsync_dir, write_new

__all__ = ["ContainerMeta", "ContainerStatus", "RecordStore", "SandboxMeta", "SandboxStatus"]

log = logging.getLogger("stowage.cri.store")

T = TypeVar("T")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass(frozen=True)
class SandboxMeta:
    id: str
    name: str  # the reserved name: name_namespace_uid_attempt
    config: str  # base64 of the serialized PodSandboxConfig
    created_ns: int
    runtime_handler: str
    state_dir: str
    netns_path: str | None
    ipc_ns_path: str | None
    uts_ns_path: str | None
    cgroup_parent: str
    infra_id: str | None = None  # the infra (pause) container, when the pod needs one
    user_ns_path: str | None = None  # the pod's own user namespace, when it has one


@dataclass(frozen=True)
class SandboxStatus:
    state: str = "ready"  # ready | notready
    ips: tuple[str, ...] = ()
    network_attached: bool = False
    version: int = 0


@dataclass(frozen=True)
class ContainerMeta:
    id: str
    sandbox_id: str
    name: str  # the reserved name
    config: str  # base64 of the serialized ContainerConfig
    created_ns: int
    image_id: str
    image_ref: str  # what the kubelet asked for (user specified image)
    log_path: str
    bundle: str
    snapshot_key: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerStatus:
    state: str = "created"  # created | running | exited | unknown
    pid: int = 0
    started_ns: int = 0
    finished_ns: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    version: int = 0


def _load(cls: type[T], path: str) -> T:
    with open(path) as f:
        data = json.load(f)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    if "extra" in kwargs and isinstance(kwargs["extra"], tuple):
        kwargs["extra"] = {}
    return cls(**kwargs)


def _dump(obj: object) -> bytes:
    return json.dumps(dataclasses.asdict(obj), sort_keys=True).encode()  # type: ignore[call-overload]


class RecordStore:
    """The records of one kind (``sandboxes`` or ``containers``)."""

    def __init__(self, root: str, kind: str) -> None:
        self.dir = os.path.join(root, kind)
        self._tmp = os.path.join(root, "tmp")
        self._quarantine = os.path.join(root, "quarantine")
        for d in (self.dir, self._tmp, self._quarantine):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def create(self, obj_id: str, meta: object, status: object, durable: bool = True) -> None:
        """Records a new object. The record appears whole or not at all, whatever happens to
        the process; with ``durable`` it also survives a power loss (see ``Registry``)."""
        work = os.path.join(self._tmp, uuid.uuid4().hex)
        os.makedirs(work, mode=0o700)
        try:
            # The staging directory appears whole under its final name, so its files need
            # no temporary names: each file and the directory are synced once, then the rename.
            write_new(os.path.join(work, "meta.json"), _dump(meta), 0o600, sync=durable)
            write_new(os.path.join(work, "status.json"), _dump(status), 0o600, sync=durable)
            if durable:
                fsync_dir(work)
            os.rename(work, os.path.join(self.dir, obj_id))
            if durable:
                fsync_dir(self.dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def write_status(self, obj_id: str, status: Any) -> Any:
        new = dataclasses.replace(status, version=status.version + 1)
        atomic_write(os.path.join(self.dir, obj_id, "status.json"), _dump(new), 0o600)
        return new

    def delete(self, obj_id: str) -> None:
        path = os.path.join(self.dir, obj_id)
        if os.path.isdir(path):
            doomed = os.path.join(self._tmp, "rm-" + uuid.uuid4().hex)
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    def load_all(self, meta_cls: type[Any], status_cls: type[Any]) -> list[tuple[Any, Any]]:
        for name in os.listdir(self._tmp):
            shutil.rmtree(os.path.join(self._tmp, name), ignore_errors=True)
        out = []
        for obj_id in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, obj_id)
            try:
                meta = _load(meta_cls, os.path.join(path, "meta.json"))
                status = _load(status_cls, os.path.join(path, "status.json"))
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.error("quarantining unreadable record", extra={"id": obj_id, "error": str(exc)})
                with contextlib.suppress(OSError):
                    os.rename(path, os.path.join(self._quarantine, obj_id + "-" + uuid.uuid4().hex))
                continue
            out.append((meta, status))
        return out
