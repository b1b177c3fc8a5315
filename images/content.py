"""Content store: blobs addressed by digest, ingested atomically, shared by every image.

Theory of operation: a blob is written to ``ingest/`` under a per-digest lock, hashed while it
is written, fsynced, and renamed to ``blobs/<alg>/<hex>`` only when its digest and size match
what its descriptor promised. Readers therefore never see a partial blob, a crash leaves only
an orphan in ``ingest/`` (swept at start-up), and two pulls of one blob serialise on the lock:
the second finds the blob committed and skips the download.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from images.atomic import file_lock, fsync_dir
from images.errors import BlobMismatchError, ImageNotFoundError

__all__ = ["BlobWriter", "ContentStore"]

_CHUNK = 1 << 20


def _split(digest: str) -> tuple[str, str]:
    alg, sep, hexpart = digest.partition(":")
    if not sep or alg not in ("sha256", "sha384", "sha512") or not hexpart.isalnum():
        raise BlobMismatchError(f"invalid digest {digest!r}")
    return alg, hexpart


@dataclass
class BlobWriter:
    """An open ingest: write bytes, then ``commit`` verifies and publishes them."""

    digest: str
    size: int | None
    _file: BinaryIO
    _tmp: str
    _final: str
    _hash: hashlib._Hash
    written: int = 0

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._hash.update(data)
        self.written += len(data)
        return len(data)

    def verify(self) -> None:
        """Raises BlobMismatchError unless what was written is the promised content."""
        actual = f"{self.digest.split(':', 1)[0]}:{self._hash.hexdigest()}"
        if actual != self.digest:
            raise BlobMismatchError(f"blob digest mismatch: expected {self.digest}, got {actual}")
        if self.size is not None and self.written != self.size:
            raise BlobMismatchError(
                f"blob {self.digest} size mismatch: expected {self.size}, got {self.written}"
            )

    def commit(self) -> None:
        self.verify()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.chmod(self._tmp, 0o444)
        os.replace(self._tmp, self._final)
        fsync_dir(os.path.dirname(self._final))


class ContentStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self._blobs = os.path.join(root, "blobs")
        self._ingest = os.path.join(root, "ingest")
        for d in (self._blobs, self._ingest):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def path(self, digest: str) -> str:
        alg, hexpart = _split(digest)
        return os.path.join(self._blobs, alg, hexpart)

    def exists(self, digest: str) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError as exc:
            raise ImageNotFoundError(f"blob {digest} not found") from exc

    def read(self, digest: str) -> bytes:
        try:
            with open(self.path(digest), "rb") as f:
                return f.read()
        except FileNotFoundError as exc:
            raise ImageNotFoundError(f"blob {digest} not found") from exc

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as exc:
            raise ImageNotFoundError(f"blob {digest} not found") from exc

    @contextlib.contextmanager
    def ingest(self, digest: str, size: int | None = None) -> Iterator[BlobWriter | None]:
        """Yields a writer, or None when the blob is already committed.

        Holds the digest's lock for the whole block, so concurrent ingests of one blob wait for
        the first and then see it committed. The caller calls ``commit``; anything else (an
        exception, a return without commit) discards the partial file.
        """
        alg, hexpart = _split(digest)
        final = self.path(digest)
        os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
        with file_lock(os.path.join(self._ingest, f"{alg}-{hexpart}.lock")):
            if os.path.exists(final):
                yield None
                return
            tmp = os.path.join(self._ingest, f"{alg}-{hexpart}.{uuid.uuid4().hex}")
            f = open(tmp, "wb")  # noqa: SIM115 - closed by commit or below
            writer = BlobWriter(digest, size, f, tmp, final, hashlib.new(alg))
            try:
                yield writer
            finally:
                # Closing flushes, and on a full disk that fails again: the partial file must
                # go all the same.
                with contextlib.suppress(OSError):
                    f.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def write_blob(self, data: bytes, digest: str | None = None) -> str:
        if digest is None:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with self.ingest(digest, len(data)) as w:
            if w is not None:
                w.write(data)
                w.commit()
        return digest

    def copy_in(self, src: BinaryIO, digest: str, size: int | None = None) -> None:
        with self.ingest(digest, size) as w:
            if w is not None:
                while chunk := src.read(_CHUNK):
                    w.write(chunk)
                w.commit()

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))

    def list(self) -> Iterator[str]:
        for alg in sorted(os.listdir(self._blobs)):
            for hexpart in os.listdir(os.path.join(self._blobs, alg)):
                yield f"{alg}:{hexpart}"

    def usage(self) -> tuple[int, int]:
        """Bytes and inodes used by committed blobs."""
        total = inodes = 0
        for digest in self.list():
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(self.path(digest)).st_size
                inodes += 1
        return total, inodes

    def sweep_ingest(self) -> None:
        """Removes the leftovers of ingests a crash interrupted (start-up only)."""
        for name in os.listdir(self._ingest):
            if not name.endswith(".lock"):
                path = os.path.join(self._ingest, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
