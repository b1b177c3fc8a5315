from __future__ import annotations

import hashlib
import os
import threading

import pytest

from images.content import ContentStore
from images.errors import BlobMismatchError, ImageNotFoundError


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_write_read_and_dedup(tmp_path: str) -> None:
    store = ContentStore(str(tmp_path))
    d = store.write_blob(b"hello")
    assert d == _digest(b"hello")
    assert store.read(d) == b"hello"
    assert store.write_blob(b"hello") == d
    assert list(store.list()) == [d]
    assert store.usage() == (5, 1)


def test_mismatch_leaves_nothing(tmp_path: str) -> None:
    store = ContentStore(str(tmp_path))
    with pytest.raises(BlobMismatchError, match="digest mismatch"):
        store.write_blob(b"hello", _digest(b"other"))
    with store.ingest(_digest(b"abc"), 4) as w:
        assert w is not None
        w.write(b"abc")
        with pytest.raises(BlobMismatchError, match="size mismatch"):
            w.commit()
    assert list(store.list()) == []
    assert [n for n in os.listdir(tmp_path / "ingest") if not n.endswith(".lock")] == []


def test_uncommitted_ingest_is_discarded(tmp_path: str) -> None:
    store = ContentStore(str(tmp_path))
    d = _digest(b"data")
    with store.ingest(d) as w:
        assert w is not None
        w.write(b"da")
    assert not store.exists(d)
    with pytest.raises(ImageNotFoundError):
        store.read(d)


def test_concurrent_ingests_share_one_write(tmp_path: str) -> None:
    store = ContentStore(str(tmp_path))
    data = os.urandom(1 << 20)
    d = _digest(data)
    writers: list[bool] = []
    lock = threading.Lock()

    def ingest() -> None:
        with store.ingest(d, len(data)) as w:
            with lock:
                writers.append(w is not None)
            if w is not None:
                w.write(data)
                w.commit()

    threads = [threading.Thread(target=ingest) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert writers.count(True) == 1
    assert store.read(d) == data


def test_invalid_digest_is_refused(tmp_path: str) -> None:
    store = ContentStore(str(tmp_path))
    with pytest.raises(BlobMismatchError, match="invalid digest"):
        store.path("md5:../../etc")
