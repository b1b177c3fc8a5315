"""Unpacks one image layer into an empty directory that then serves as an overlayfs lower layer.

Theory of operation
-------------------
The blob is read once, as a stream: compression is told by magic bytes (the media type only has
to be a layer type, since some tools label plain tars ``+gzip``), the decompressed bytes pass
through a hasher (their sha256 is the layer's diff id, which the caller compares with the image
config) and then through ``tarfile`` in streaming mode, which never seeks.

Safety rests on one rule: every filesystem call is relative to a directory file descriptor that
was opened, component by component, with ``O_NOFOLLOW|O_DIRECTORY`` below the target. A symlink
in a parent position is refused instead of followed, so no entry and no hardlink source can reach
outside the target however earlier entries shaped the tree. Symlink *targets* are stored verbatim:
they are resolved inside the container later, never here. Entry names with ``..`` components or a
leading ``/`` are refused outright.

OCI whiteouts become what overlayfs understands: ``.wh.NAME`` a 0:0 character device ``NAME``,
``.wh..wh..opq`` the ``trusted.overlay.opaque=y`` xattr on its directory. Later entries replace
earlier ones at the same path, except that a whiteout never hides content of its own layer (as
the image spec says): a whiteout meeting a directory of its layer, in either order, makes that
directory opaque instead. Directory metadata is applied last, deepest first, because writing into a
directory changes its mtime and a read-only mode would block its own content.

Errors: UnsafeLayerError for anything that tries to escape, LayerError for corrupt or unsupported
input. Either way the target is left half-written and the caller deletes it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, BinaryIO, TypeVar, cast

import zstandard

from images.digest import DigestingReader, Readable
from images.errors import LayerError, UnsafeLayerError
from images.manifest import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_OCI_CONFIG,
    Compression,
)

__all__ = [
    "OPAQUE_MARKER",
    "OVERLAY_OPAQUE_XATTR",
    "WHITEOUT_PREFIX",
    "EntryKind",
    "Ignored",
    "LayerStats",
    "Opaque",
    "Regular",
    "Whiteout",
    "classify_entry",
    "safe_relpath",
    "sniff_compression",
    "unpack_layer",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_WHITEOUT_META_PREFIX = ".wh..wh."
_XATTR_PAX_PREFIX = "SCHILY.xattr."
# A layer must not steer overlayfs (redirects, metacopy, its own opaque flags) through xattrs.
_OVERLAY_XATTR_PREFIX = "trusted.overlay."

_CHUNK = 1 << 20
# tarfile's stream buffer: every header read copies what is left of it, so big is not better.
_TAR_BUFSIZE = 64 << 10
# Bounds memory when a small compressed chunk inflates enormously.
_MAX_INFLATE = 4 << 20
_FD_CACHE_SIZE = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CONFIG_MEDIA_TYPES = frozenset({MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG})
_NOT_LAYERS = MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES | _CONFIG_MEDIA_TYPES

_R = TypeVar("_R")


@dataclass(frozen=True)
class LayerStats:
    diff_id: str  # sha256 of the uncompressed tar stream, end-of-archive padding included
    size: int  # bytes of the uncompressed tar stream
    entries: int
    skipped_xattrs: int = 0  # security.* refused by the kernel, unsupported ones, overlay ones
    skipped_devices: int = 0  # char/block devices, which only root may create


# ---------------------------------------------------------------------------------------------
# pure helpers


@dataclass(frozen=True)
class Regular:
    """An ordinary entry (file, directory, link, device...) at ``path``."""

    path: str


@dataclass(frozen=True)
class Whiteout:
    """``.wh.NAME``: hide ``path`` of the lower layers."""

    path: str


@dataclass(frozen=True)
class Opaque:
    """``.wh..wh..opq``: hide everything the lower layers have in ``directory``."""

    directory: str


@dataclass(frozen=True)
class Ignored:
    """Other ``.wh..wh.`` names (aufs hardlink bookkeeping): nothing to create."""

    path: str


EntryKind = Regular | Whiteout | Opaque | Ignored


def safe_relpath(name: str) -> str:
    """The normalised relative path of a tar entry name ("" is the layer root).

    ``./`` prefixes, empty and ``.`` components are dropped; absolute names and ``..``
    components raise UnsafeLayerError.
    """
    if not name:
        raise UnsafeLayerError("layer entry with an empty name")
    if "\x00" in name:
        raise UnsafeLayerError(f"layer entry {name!r}: name contains a NUL byte")
    if name.startswith("/"):
        raise UnsafeLayerError(f"layer entry {name!r}: absolute path")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise UnsafeLayerError(f"layer entry {name!r}: '..' component")
    return "/".join(parts)


def classify_entry(name: str) -> EntryKind:
    """What a tar entry name means for an overlay layer; raises UnsafeLayerError if unsafe."""
    rel = safe_relpath(name)
    parent, _, base = rel.rpartition("/")
    if not base.startswith(WHITEOUT_PREFIX):
        return Regular(rel)
    if base == OPAQUE_MARKER:
        return Opaque(parent)
    if base.startswith(_WHITEOUT_META_PREFIX):
        return Ignored(rel)
    hidden = base[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", ".."):
        raise UnsafeLayerError(f"layer entry {name!r}: whiteout of {hidden!r}")
    return Whiteout(f"{parent}/{hidden}" if parent else hidden)


def sniff_compression(head: bytes) -> Compression:
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


def _mtime_ns(info: tarfile.TarInfo) -> int:
    # PAX keeps nanoseconds as a decimal string; the float in TarInfo.mtime would round them.
    raw = info.pax_headers.get("mtime", "")
    sec, _, frac = raw.partition(".")
    if sec.isdigit() and (not frac or frac.isdigit()):
        return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
    return int(info.mtime * 1_000_000_000)


def _xattrs(info: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    # tarfile decodes PAX values with surrogateescape, so binary values (capabilities) survive.
    return [
        (key[len(_XATTR_PAX_PREFIX) :], value.encode("utf-8", "surrogateescape"))
        for key, value in info.pax_headers.items()
        if key.startswith(_XATTR_PAX_PREFIX)
    ]


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _make_opaque(fd: int, entry: str) -> None:
    try:
        os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
    except PermissionError as exc:
        raise LayerError(
            f"layer entry {entry!r}: setting {OVERLAY_OPAQUE_XATTR} needs root"
        ) from exc


# ---------------------------------------------------------------------------------------------
# decompression


class _Prefixed:
    """Gives back the bytes read to sniff the compression, then the rest of the stream."""

    def __init__(self, head: bytes, raw: Readable) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._raw.read(size)
        if size < 0:
            data, self._head = self._head + self._raw.read(), b""
        else:
            data, self._head = self._head[:size], self._head[size:]
        return data


class _GzipStream:
    """Streaming gzip decoder (multi-member, trailing zero padding allowed).

    zlib checks each member's CRC and length itself (wbits=31), and unlike ``gzip.GzipFile`` it
    reads the compressed input in large chunks.
    """

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._input = b""
        self._inflater: zlib._Decompress | None = None

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        while size:
            if not self._input and not self._refill():
                return b""
            if self._inflater is None:
                # Between members: skip zero padding, then a new member must start.
                self._input = self._input.lstrip(b"\x00")
                if not self._input:
                    continue
                self._inflater = zlib.decompressobj(wbits=31)
            try:
                out = self._inflater.decompress(self._input, min(size, _MAX_INFLATE))
            except zlib.error as exc:
                # Raised here, not left to tarfile, which would relabel it a tar error.
                raise LayerError(f"layer blob does not decompress (gzip): {exc}") from exc
            self._input = self._inflater.unconsumed_tail
            if self._inflater.eof:
                self._input = self._inflater.unused_data + self._input
                self._inflater = None
            if out:
                return out
        return b""

    def _refill(self) -> bool:
        self._input = self._raw.read(_CHUNK)
        if self._input:
            return True
        if self._inflater is not None:
            raise LayerError("layer blob ends in the middle of a gzip stream (truncated)")
        return False


def _read_head(stream: Readable, n: int) -> bytes:
    head = b""
    while len(head) < n:
        more = stream.read(n - len(head))
        if not more:
            break
        head += more
    return head


def _decompressed(stream: Readable) -> Readable:
    head = _read_head(stream, len(_ZSTD_MAGIC))
    source = _Prefixed(head, stream)
    kind = sniff_compression(head)
    if kind is Compression.GZIP:
        return _GzipStream(source)
    if kind is Compression.ZSTD:
        # zstandard only calls read(); its stubs ask for a full IO[bytes].
        reader: Readable = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], source), read_size=_CHUNK, read_across_frames=True, closefd=False
        )
        return reader
    return source


@contextmanager
def _corrupt_input_errors() -> Iterator[None]:
    try:
        yield
    except tarfile.TarError as exc:
        raise LayerError(f"layer is not a valid tar archive: {exc}") from exc
    except (zstandard.ZstdError, EOFError) as exc:
        raise LayerError(f"layer blob does not decompress: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# the filesystem side


class _Tree:
    """Directory fds below the target, each opened without following symlinks.

    A small LRU cache: tar entries come grouped by directory, so most lookups are one dict hit.
    An fd from ``dir_fd`` is valid until the next ``dir_fd`` or ``forget`` call.
    """

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._fds: dict[str, int] = {}

    def dir_fd(self, rel: str, *, create: bool, entry: str) -> int:
        if not rel:
            return self.root_fd
        fd = self._fds.pop(rel, None)
        if fd is None:
            parent, _, name = rel.rpartition("/")
            fd = self._open_child(
                self.dir_fd(parent, create=create, entry=entry), name, rel, create, entry
            )
        self._fds[rel] = fd
        if len(self._fds) > _FD_CACHE_SIZE:
            os.close(self._fds.pop(next(iter(self._fds))))
        return fd

    @staticmethod
    def _open_child(pfd: int, name: str, rel: str, create: bool, entry: str) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise UnsafeLayerError(
                    f"layer entry {entry!r}: directory {rel!r} is not in the layer"
                ) from None
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeLayerError(
                    f"layer entry {entry!r}: {rel!r} is a symlink; refusing to follow it"
                ) from exc
            if not (create and _is_whiteout(st)):
                raise LayerError(f"layer entry {entry!r}: {rel!r} is not a directory") from exc
            # Deleted, then recreated in this layer: overlayfs spells that as an opaque dir.
            os.unlink(name, dir_fd=pfd)
            fd = _Tree._mkdir(pfd, name)
            _make_opaque(fd, entry)
            return fd
        # A parent the archive did not list: created like containerd does, 0755 whatever umask.
        return _Tree._mkdir(pfd, name)

    @staticmethod
    def _mkdir(pfd: int, name: str) -> int:
        os.mkdir(name, 0o755, dir_fd=pfd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        os.fchmod(fd, 0o755)
        return fd

    def forget(self, rel: str) -> None:
        """Closes cached fds of ``rel`` and below (it is about to be removed)."""
        prefix = rel + "/"
        for key in [k for k in self._fds if k == rel or k.startswith(prefix)]:
            os.close(self._fds.pop(key))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class _Unpacker:
    def __init__(self, tree: _Tree, as_root: bool) -> None:
        self._tree = tree
        self._as_root = as_root
        self._dirs: dict[str, tarfile.TarInfo] = {}  # metadata applied by finish()
        self.entries = 0
        self.skipped_xattrs = 0
        self.skipped_devices = 0

    def add(self, tf: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        self.entries += 1
        kind = classify_entry(info.name)
        try:
            if isinstance(kind, Regular):
                self._entry(tf, info, kind.path)
            elif isinstance(kind, Whiteout):
                self._whiteout(kind.path, info.name)
            elif isinstance(kind, Opaque):
                self._opaque(kind.directory, info.name)
        except (OSError, ValueError, OverflowError) as exc:
            raise LayerError(f"layer entry {info.name!r}: {exc}") from exc

    def finish(self) -> None:
        # Deepest first: a parent's mode is applied only once nothing below needs to be reached.
        for rel in sorted(self._dirs, key=lambda p: p.count("/") + bool(p), reverse=True):
            info = self._dirs[rel]
            try:
                self._meta_fd(self._tree.dir_fd(rel, create=False, entry=info.name), info)
            except (OSError, ValueError, OverflowError) as exc:
                raise LayerError(f"layer entry {info.name!r}: {exc}") from exc

    # entries

    def _entry(self, tf: tarfile.TarFile, info: tarfile.TarInfo, rel: str) -> None:
        if not rel:
            if not info.isdir():
                raise LayerError(f"layer entry {info.name!r} would replace the layer root")
            self._dirs[rel] = info
            return
        parent, _, name = rel.rpartition("/")
        if info.islnk():
            self._hardlink(info, parent, name, rel)
            return
        pfd = self._tree.dir_fd(parent, create=True, entry=info.name)
        if info.isreg():
            self._file(tf, info, pfd, name, rel)
        elif info.isdir():
            self._dir(info, pfd, name, rel)
        elif info.issym():
            self._create(pfd, name, rel, lambda: os.symlink(info.linkname, name, dir_fd=pfd))
            self._meta_path(pfd, name, info, chmod=False)
        elif info.ischr() or info.isblk():
            self._device(info, pfd, name, rel)
        elif info.isfifo():
            self._create(pfd, name, rel, lambda: os.mkfifo(name, 0o600, dir_fd=pfd))
            self._meta_path(pfd, name, info, chmod=True)
        else:
            raise LayerError(f"layer entry {info.name!r} has unsupported tar type {info.type!r}")

    def _file(
        self, tf: tarfile.TarFile, info: tarfile.TarInfo, pfd: int, name: str, rel: str
    ) -> None:
        fd = self._create(pfd, name, rel, lambda: os.open(name, _FILE_FLAGS, 0o600, dir_fd=pfd))
        with open(fd, "wb", closefd=True) as out:
            if info.size:
                src = tf.extractfile(info)
                if src is None:  # isreg() entries always have data; keeps mypy honest
                    raise LayerError(f"layer entry {info.name!r} has no data")
                shutil.copyfileobj(src, out, _CHUNK)
                out.flush()
            self._meta_fd(fd, info)

    def _dir(self, info: tarfile.TarInfo, pfd: int, name: str, rel: str) -> None:
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(pfd, name, rel)
                os.mkdir(name, 0o700, dir_fd=pfd)
                if _is_whiteout(st):  # deleted, then recreated in this layer
                    _make_opaque(self._tree.dir_fd(rel, create=False, entry=info.name), info.name)
        self._dirs[rel] = info

    def _hardlink(self, info: tarfile.TarInfo, parent: str, name: str, rel: str) -> None:
        source = _hardlink_source(info)
        if source == rel:
            return  # a link to itself: the entry is already there
        sparent, _, sname = source.rpartition("/")
        # Duplicated so the destination lookup below cannot close it through the LRU cache.
        sfd = os.dup(self._tree.dir_fd(sparent, create=False, entry=info.name))
        try:
            try:
                st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
            except FileNotFoundError:
                raise UnsafeLayerError(
                    f"layer entry {info.name!r}: hardlink target {info.linkname!r} is not in "
                    "the layer"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise LayerError(
                    f"layer entry {info.name!r}: hardlink to directory {info.linkname!r}"
                )
            pfd = self._tree.dir_fd(parent, create=True, entry=info.name)
            self._create(
                pfd,
                name,
                rel,
                lambda: os.link(sname, name, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False),
            )
        finally:
            os.close(sfd)

    def _device(self, info: tarfile.TarInfo, pfd: int, name: str, rel: str) -> None:
        if not self._as_root:
            self.skipped_devices += 1  # as containerd does when it is not root
            return
        kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
        dev = os.makedev(info.devmajor, info.devminor)
        self._create(pfd, name, rel, lambda: os.mknod(name, kind | 0o600, dev, dir_fd=pfd))
        self._meta_path(pfd, name, info, chmod=True)

    def _whiteout(self, path: str, entry: str) -> None:
        parent, _, name = path.rpartition("/")
        pfd = self._tree.dir_fd(parent, create=True, entry=entry)
        try:
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        except FileExistsError:
            # A whiteout hides lower layers only, never its own layer's content. A file of this
            # layer already hides the lower path; a directory would merge with it unless opaque.
            if stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                _make_opaque(self._tree.dir_fd(path, create=False, entry=entry), entry)
        except PermissionError as exc:
            raise LayerError(
                f"layer entry {entry!r}: creating an overlay whiteout (0:0 device) needs root"
            ) from exc

    def _opaque(self, directory: str, entry: str) -> None:
        _make_opaque(self._tree.dir_fd(directory, create=True, entry=entry), entry)

    # helpers

    def _create(self, pfd: int, name: str, rel: str, make: Callable[[], _R]) -> _R:
        """Runs ``make``; if the name is taken by an earlier entry, removes that and retries."""
        try:
            return make()
        except FileExistsError:
            self._remove(pfd, name, rel)
            return make()

    def _remove(self, pfd: int, name: str, rel: str) -> None:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=pfd)  # a symlink is removed, never followed
            return
        self._tree.forget(rel)
        prefix = rel + "/"
        for key in [k for k in self._dirs if k == rel or k.startswith(prefix)]:
            del self._dirs[key]
        shutil.rmtree(name, dir_fd=pfd)

    def _meta_fd(self, fd: int, info: tarfile.TarInfo) -> None:
        # Order matters: chown clears setuid bits and file capabilities, so it goes first.
        if self._as_root:
            os.fchown(fd, info.uid, info.gid)
        os.fchmod(fd, info.mode & 0o7777)
        for key, value in _xattrs(info):
            self._setxattr(fd, key, value)
        mtime = _mtime_ns(info)
        os.utime(fd, ns=(mtime, mtime))

    def _meta_path(self, pfd: int, name: str, info: tarfile.TarInfo, *, chmod: bool) -> None:
        if self._as_root:
            os.chown(name, info.uid, info.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:  # only for nodes just created here, never symlinks
            os.chmod(name, info.mode & 0o7777, dir_fd=pfd)
        xattrs = _xattrs(info)
        if xattrs:
            # setxattr has no dir_fd form; /proc/self/fd/N is the verified directory itself.
            path = f"/proc/self/fd/{pfd}/{name}"
            for key, value in xattrs:
                self._setxattr(path, key, value)
        mtime = _mtime_ns(info)
        os.utime(name, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def _setxattr(self, target: int | str, key: str, value: bytes) -> None:
        if key.startswith(_OVERLAY_XATTR_PREFIX):
            self.skipped_xattrs += 1
            return
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=False)
        except OSError as exc:
            unsupported = exc.errno == errno.EOPNOTSUPP
            if unsupported or (exc.errno == errno.EPERM and key.startswith("security.")):
                self.skipped_xattrs += 1
                return
            raise


def _hardlink_source(info: tarfile.TarInfo) -> str:
    try:
        source = safe_relpath(info.linkname)
    except UnsafeLayerError as exc:
        raise UnsafeLayerError(
            f"layer entry {info.name!r}: unsafe hardlink target {info.linkname!r}"
        ) from exc
    if not source:
        raise UnsafeLayerError(f"layer entry {info.name!r}: hardlink to the layer root")
    return source


# ---------------------------------------------------------------------------------------------
# entry point


def unpack_layer(
    stream: BinaryIO, media_type: str, target: str, *, as_root: bool | None = None
) -> LayerStats:
    """Unpacks the layer blob ``stream`` (as stored, usually compressed) into ``target``.

    ``target`` must be an existing empty directory. ``as_root`` (default: whether we are root)
    decides whether ownership is applied and device nodes are created. On any error the target
    holds partial content and must be deleted by the caller.
    """
    if media_type in _NOT_LAYERS:
        raise LayerError(f"media type {media_type!r} is not a layer")
    root = os.geteuid() == 0 if as_root is None else as_root
    root_fd = os.open(target, _DIR_FLAGS)
    try:
        if os.listdir(root_fd):
            raise LayerError(f"unpack target {target!r} is not empty")
        tree = _Tree(root_fd)
        try:
            return _unpack(stream, tree, root)
        finally:
            tree.close()
    finally:
        os.close(root_fd)


def _unpack(stream: Readable, tree: _Tree, as_root: bool) -> LayerStats:
    unpacker = _Unpacker(tree, as_root)
    with _corrupt_input_errors():
        tar_stream = DigestingReader(_decompressed(stream))
        # tarfile wants an IO[bytes]; in "r|" mode it only ever calls read().
        fileobj = cast(IO[bytes], tar_stream)
        with tarfile.open(fileobj=fileobj, mode="r|", bufsize=_TAR_BUFSIZE) as tf:
            for info in tf:
                unpacker.add(tf, info)
        unpacker.finish()
        # The diff id covers the whole stream, including padding after the end-of-archive.
        tar_stream.drain(_CHUNK)
    return LayerStats(
        diff_id=tar_stream.digest,
        size=tar_stream.size,
        entries=unpacker.entries,
        skipped_xattrs=unpacker.skipped_xattrs,
        skipped_devices=unpacker.skipped_devices,
    )
