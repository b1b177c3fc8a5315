"""Content digests (``algorithm:hex``) and a reader that hashes what passes through it.

Only the algorithms the OCI image spec registers are accepted (sha256, sha384, sha512), with
lowercase hex of the exact length: a digest is an identity, so two spellings of one digest must
never both be valid.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from images.errors import BlobMismatchError, InvalidReferenceError

__all__ = [
    "DIGEST_ALGORITHMS",
    "DigestingReader",
    "Readable",
    "parse_digest",
    "sha256_digest",
    "split_digest",
]

# Algorithm name -> length of its hex encoding.
DIGEST_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}

_LOWER_HEX = re.compile(r"[0-9a-f]+")


class Readable(Protocol):
    """Anything with a binary ``read``: files, sockets' file objects, decompressors."""

    def read(self, size: int = -1, /) -> bytes: ...


def split_digest(s: str) -> tuple[str, str]:
    """``"sha256:ab…"`` -> ``("sha256", "ab…")``; raises InvalidReferenceError if malformed."""
    algorithm, sep, hexpart = s.partition(":")
    if not sep:
        raise InvalidReferenceError(f"invalid digest {s!r}: expected 'algorithm:hex'")
    want = DIGEST_ALGORITHMS.get(algorithm)
    if want is None:
        known = ", ".join(DIGEST_ALGORITHMS)
        raise InvalidReferenceError(
            f"invalid digest {s!r}: unsupported algorithm {algorithm!r} (known: {known})"
        )
    if len(hexpart) != want or not _LOWER_HEX.fullmatch(hexpart):
        raise InvalidReferenceError(
            f"invalid digest {s!r}: {algorithm} needs {want} lowercase hex digits"
        )
    return algorithm, hexpart


def parse_digest(s: str) -> str:
    """Returns ``s`` unchanged if it is a valid digest, else raises InvalidReferenceError."""
    split_digest(s)
    return s


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DigestingReader:
    """Wraps a binary stream; counts and hashes every byte read through it.

    The hash covers exactly what callers read, so read to EOF before ``verify``.
    """

    def __init__(self, raw: Readable, algorithm: str = "sha256") -> None:
        if algorithm not in DIGEST_ALGORITHMS:
            raise InvalidReferenceError(f"unsupported digest algorithm {algorithm!r}")
        self._raw = raw
        self._algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self._size = 0

    @classmethod
    def for_digest(cls, raw: Readable, expected_digest: str) -> DigestingReader:
        """A reader hashing with the algorithm ``expected_digest`` was made with."""
        return cls(raw, split_digest(expected_digest)[0])

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        if data:
            self._hash.update(data)
            self._size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self, chunk: int = 1 << 20) -> None:
        """Reads (and hashes) the rest of the stream."""
        while self.read(chunk):
            pass

    @property
    def size(self) -> int:
        return self._size

    @property
    def digest(self) -> str:
        return f"{self._algorithm}:{self._hash.hexdigest()}"

    def verify(self, expected_digest: str, expected_size: int | None = None) -> None:
        """Raises BlobMismatchError unless what was read has this size and digest."""
        algorithm, _ = split_digest(expected_digest)
        if expected_size is not None and self._size != expected_size:
            raise BlobMismatchError(
                f"blob {expected_digest}: read {self._size} bytes, expected {expected_size}"
            )
        if algorithm != self._algorithm:
            raise BlobMismatchError(
                f"blob {expected_digest}: hashed with {self._algorithm}, cannot verify {algorithm}"
            )
        actual = self.digest
        if actual != expected_digest:
            raise BlobMismatchError(f"blob {expected_digest}: content hashes to {actual}")
