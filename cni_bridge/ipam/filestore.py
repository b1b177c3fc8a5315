"""The real ``Store``: host-local's on-disk layout, so the reference plugin and ours can
read each other's data directory.

``<dataDir>/<network>/<ip>`` holds ``<container id>\\r\\n<ifname>``; ``last_reserved_ip.<n>``
holds the last address reserved in range set ``n``; ``lock`` is flock()ed around every
read-modify-write, which serialises concurrent plugin processes (and the reference's, which
locks the same file).

Durability: a reservation file is created with O_EXCL: the creation itself is the atomic
claim, visible to every other process at once and kept across a crash of this process. It is
not fsynced by default (``durable=False``): what it protects is a pod's address, and a pod's
veth, routes and NAT rules all die with the host, so after a power loss the runtime re-ADDs
every pod and GC frees what no pod holds. (Measured: the fsyncs were ~4 ms of a ~6 ms ADD.)
``last_reserved_ip`` is only a round-robin hint, read and written under the lock: it is
rewritten in place (``pwrite``, then ``ftruncate`` only when it shrinks) rather than
replaced by rename, which on ext4 starts writeback of the new file on every ADD (measured
~0.25 ms, a tenth of an ADD). A torn hint after a crash only makes the next allocation
start from the beginning of the range.

Every ADD reads every reservation (an attachment may not hold two addresses of one set),
so that scan uses raw ``os.open``/``os.read`` relative to the directory's fd: about half
the cost of ``open()`` file objects, which matters with hundreds of pods.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from cni_bridge.errors import IOFailure
from cni_bridge.ipam.store import Allocation

__all__ = ["FileStore"]

_LAST = "last_reserved_ip."
_RESERVING = ".reserving-"
_SKIP = frozenset(("lock",))


class FileStore:
    def __init__(self, data_dir: str, network: str, durable: bool = False) -> None:
        if not network or "/" in network or network in (".", ".."):
            raise IOFailure(f"network name {network!r} cannot name a directory")
        self.dir = os.path.join(data_dir, network)
        self.durable = durable
        self._dir_fd = -1

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        try:
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
            fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
        except OSError as exc:
            raise IOFailure(f"cannot open the IPAM store {self.dir}", str(exc)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield
            finally:
                os.close(self._dir_fd)
                self._dir_fd = -1
        finally:
            os.close(fd)  # closing the last fd drops the flock

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def reserve(self, container_id: str, ifname: str, ip: str, range_set: int) -> bool:
        # The reservation appears whole or not at all: written under a temporary name, then
        # hard-linked to the address (link fails if it is taken). A plugin killed between
        # creating and writing the file must not leave an address no DEL can match.
        tmp = self._path(f"{_RESERVING}{os.getpid()}-{ip}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, f"{container_id}\r\n{ifname}".encode())
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self._path(ip))
            except FileExistsError:
                return False
        except OSError as exc:
            raise IOFailure(f"cannot reserve {ip}", str(exc)) from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if self.durable and self._dir_fd >= 0:
            os.fsync(self._dir_fd)
        try:
            fd = os.open(self._path(f"{_LAST}{range_set}"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o644)
            try:
                data = ip.encode()
                os.pwrite(fd, data, 0)
                if os.fstat(fd).st_size > len(data):
                    os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
        except OSError:
            pass  # only a round-robin hint: allocation stays correct without it
        return True

    def last_reserved(self, range_set: int) -> str | None:
        try:
            with open(self._path(f"{_LAST}{range_set}")) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def release(self, ip: str) -> None:
        try:
            os.unlink(self._path(ip))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise IOFailure(f"cannot release {ip}", str(exc)) from exc

    def _read(self, name: str) -> bytes | None:
        """A reservation's content; None when it vanished or is not a file."""
        try:
            if self._dir_fd >= 0:
                fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir_fd)
            else:
                fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EISDIR):
                return None
            raise IOFailure(f"cannot read the IPAM store {self.dir}", str(exc)) from exc
        try:
            chunks = []
            while chunk := os.read(fd, 4096):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                return None
            raise IOFailure(f"cannot read the IPAM store {self.dir}", str(exc)) from exc
        finally:
            os.close(fd)

    def _entries(self) -> Iterator[tuple[str, str, str]]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if name in _SKIP or name.startswith((_LAST, ".")):
                continue
            raw = self._read(name)
            if raw is None:
                continue
            cid, _, ifname = raw.decode(errors="replace").partition("\r\n")
            # Files written by very old host-local versions hold only the container id.
            yield name, cid.strip(), ifname.strip()

    def release_by_id(self, container_id: str, ifname: str) -> list[str]:
        self._sweep_reserving()
        ips = self.get_by_id(container_id, ifname)
        for ip in ips:
            self.release(ip)
        return ips

    def _sweep_reserving(self) -> None:
        """Removes the temporary files of reservations whose plugin process died."""
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.dir):
                if not name.startswith(_RESERVING):
                    continue
                pid = name[len(_RESERVING) :].partition("-")[0]
                if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                    with contextlib.suppress(OSError):
                        os.unlink(self._path(name))

    def get_by_id(self, container_id: str, ifname: str) -> list[str]:
        return sorted(
            ip for ip, c, i in self._entries() if c == container_id and i in (ifname, "")
        )

    def allocations(self) -> list[Allocation]:
        return sorted(Allocation(ip, c, i) for ip, c, i in self._entries())
