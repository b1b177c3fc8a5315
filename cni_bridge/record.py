"""Attachment records: what an ADD set up for one (network, container id, ifname), written
*before* the kernel state it describes, so that a DEL, a GC or a DEL after a crash in the
middle of ADD knows exactly what to remove even when the namespace is gone.

``<stateDir>/<network>/<container id>:<ifname>.json``, version 1, written atomically (temp
file, rename), so a reader sees a whole record or none. Not fsynced: a record must outlive a
crash of the plugin process (the page cache does that), not of the host, which takes every
veth and nftables element a record describes with it. A record that cannot be read is
reported and left for GC; it never makes DEL fail on a healthy attachment.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cni_bridge.config import PortMapping
from cni_bridge.errors import IOFailure

__all__ = ["Record", "RecordStore"]

VERSION = 1


@dataclass(frozen=True)
class Record:
    container_id: str
    ifname: str
    bridge: str
    host_veth: str
    ips: tuple[str, ...] = ()
    masq: bool = False
    port_mappings: tuple[PortMapping, ...] = ()
    spoof_mac: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "containerID": self.container_id,
            "ifname": self.ifname,
            "bridge": self.bridge,
            "hostVeth": self.host_veth,
            "ips": list(self.ips),
            "masq": self.masq,
            "portMappings": [
                {"hostPort": p.host_port, "containerPort": p.container_port,
                 "protocol": p.protocol, "hostIP": p.host_ip}
                for p in self.port_mappings
            ],
            "spoofMac": self.spoof_mac,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Record:
        if raw.get("version") != VERSION:
            raise ValueError(f"unknown record version {raw.get('version')!r}")
        return cls(
            container_id=str(raw["containerID"]),
            ifname=str(raw["ifname"]),
            bridge=str(raw["bridge"]),
            host_veth=str(raw["hostVeth"]),
            ips=tuple(str(i) for i in raw.get("ips", ())),
            masq=bool(raw.get("masq")),
            port_mappings=tuple(
                PortMapping(int(p["hostPort"]), int(p["containerPort"]), str(p["protocol"]),
                            str(p.get("hostIP", "")))
                for p in raw.get("portMappings", ())
            ),
            spoof_mac=str(raw.get("spoofMac", "")),
        )


class RecordStore:
    def __init__(self, state_dir: str, network: str) -> None:
        if not network or "/" in network or network in (".", ".."):
            raise IOFailure(f"network name {network!r} cannot name a directory")
        self.dir = os.path.join(state_dir, network)

    def _path(self, cid: str, ifname: str) -> str:
        # ":" can appear in neither a container id nor an interface name.
        return os.path.join(self.dir, f"{cid}:{ifname}.json")

    def write(self, rec: Record) -> None:
        path = self._path(rec.container_id, rec.ifname)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(rec.to_json()).encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise IOFailure(f"cannot write the attachment record {path}", str(exc)) from exc

    def read(self, cid: str, ifname: str) -> Record | None:
        path = self._path(cid, ifname)
        try:
            with open(path, "rb") as f:
                return Record.from_json(json.loads(f.read()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IOFailure(f"unreadable attachment record {path}", str(exc)) from exc

    def remove(self, cid: str, ifname: str) -> None:
        """Remove the record and any temp file a writer killed mid-write left behind."""
        path = self._path(cid, ifname)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        prefix = os.path.basename(path) + "."
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(prefix) and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, name))

    def all(self) -> list[tuple[str, str, Record | None]]:
        """Every record as (container id, ifname, record or None when unreadable)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out: list[tuple[str, str, Record | None]] = []
        for name in sorted(names):
            if not name.endswith(".json"):
                continue
            cid, sep, ifname = name[: -len(".json")].partition(":")
            if not sep:
                continue
            try:
                out.append((cid, ifname, self.read(cid, ifname)))
            except IOFailure:
                out.append((cid, ifname, None))
        return out
