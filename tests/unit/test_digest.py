from __future__ import annotations

import hashlib
import io

import pytest

from images.digest import DigestingReader, parse_digest, sha256_digest, split_digest
from images.errors import BlobMismatchError, InvalidReferenceError

HEX = "ab" * 32


@pytest.mark.parametrize(
    "digest",
    ["sha256:" + HEX, "sha384:" + "0" * 96, "sha512:" + "f" * 128],
)
def test_parse_digest_accepts(digest: str) -> None:
    assert parse_digest(digest) == digest


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("", "algorithm:hex"),
        (HEX, "algorithm:hex"),
        ("sha256:" + HEX.upper(), "lowercase hex"),
        ("sha256:" + HEX[:-1], "64 lowercase"),
        ("sha256:" + HEX + "0", "64 lowercase"),
        ("sha256:" + "g" * 64, "64 lowercase"),
        ("sha512:" + HEX, "128 lowercase"),
        ("md5:" + "0" * 32, "unsupported algorithm"),
        ("SHA256:" + HEX, "unsupported algorithm"),
        (":" + HEX, "unsupported algorithm"),
    ],
)
def test_parse_digest_rejects(digest: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        parse_digest(digest)


def test_split_digest() -> None:
    assert split_digest("sha256:" + HEX) == ("sha256", HEX)


def test_sha256_digest() -> None:
    assert sha256_digest(b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def _reader(data: bytes) -> DigestingReader:
    return DigestingReader(io.BytesIO(data))


def test_reader_hashes_and_counts_everything_read() -> None:
    data = bytes(range(256)) * 1000
    reader = _reader(data)
    assert reader.read(10) == data[:10]
    reader.drain(chunk=4096)
    assert reader.read(1) == b""
    assert reader.size == len(data)
    assert reader.digest == sha256_digest(data)
    reader.verify(sha256_digest(data), len(data))
    reader.verify(sha256_digest(data))


def test_reader_read_all() -> None:
    reader = _reader(b"hello")
    assert reader.read() == b"hello"
    assert reader.readable()
    reader.verify(sha256_digest(b"hello"), 5)


def test_verify_size_mismatch() -> None:
    reader = _reader(b"hello")
    reader.drain()
    with pytest.raises(BlobMismatchError, match="read 5 bytes, expected 6"):
        reader.verify(sha256_digest(b"hello"), 6)


def test_verify_digest_mismatch() -> None:
    reader = _reader(b"hello")
    reader.drain()
    with pytest.raises(BlobMismatchError, match="hashes to sha256:"):
        reader.verify(sha256_digest(b"hellO"), 5)


def test_verify_other_algorithm() -> None:
    data = b"payload"
    reader = DigestingReader.for_digest(io.BytesIO(data), "sha512:" + "0" * 128)
    reader.drain()
    reader.verify("sha512:" + hashlib.sha512(data).hexdigest(), len(data))
    with pytest.raises(BlobMismatchError, match="cannot verify sha256"):
        reader.verify(sha256_digest(data))


def test_verify_rejects_malformed_expected() -> None:
    with pytest.raises(InvalidReferenceError):
        _reader(b"").verify("sha256:xyz")


def test_unknown_algorithm() -> None:
    with pytest.raises(InvalidReferenceError):
        DigestingReader(io.BytesIO(b""), "md5")
