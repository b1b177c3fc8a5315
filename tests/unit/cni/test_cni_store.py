from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from cni_bridge.ipam.filestore import FileStore
from cni_bridge.ipam.memstore import MemStore

from .store_suite import check_ipam_store


def test_memstore_keeps_the_store_contract() -> None:
    shared = MemStore()
    check_ipam_store(lambda: shared)


def test_filestore_keeps_the_store_contract(tmp_path: Path) -> None:
    check_ipam_store(lambda: FileStore(str(tmp_path), "net"))


def test_filestore_uses_host_local_layout(tmp_path: Path) -> None:
    s = FileStore(str(tmp_path), "net")
    with s.lock():
        s.reserve("abc", "eth0", "10.199.0.2", 0)
    assert (tmp_path / "net" / "10.199.0.2").read_bytes() == b"abc\r\neth0"
    assert (tmp_path / "net" / "last_reserved_ip.0").read_text() == "10.199.0.2"
    assert (tmp_path / "net" / "lock").exists()


def test_the_round_robin_hint_is_exact_when_it_grows_and_shrinks(tmp_path: Path) -> None:
    """Rewritten in place: the reference host-local reads the file without trimming it."""
    s = FileStore(str(tmp_path), "net")
    hint = tmp_path / "net" / "last_reserved_ip.0"
    with s.lock():
        for ip in ("10.199.0.9", "10.199.0.100", "10.199.0.11", "fd00::1"):
            s.reserve("abc", ip, ip, 0)
            assert hint.read_bytes() == ip.encode()
            assert s.last_reserved(0) == ip
    assert sorted(os.listdir(tmp_path / "net")) == [
        "10.199.0.100", "10.199.0.11", "10.199.0.9", "fd00::1", "last_reserved_ip.0", "lock"]


def test_filestore_reads_files_without_ifname(tmp_path: Path) -> None:
    d = tmp_path / "net"
    d.mkdir()
    (d / "10.199.0.7").write_text("old")
    s = FileStore(str(tmp_path), "net")
    with s.lock():
        assert s.get_by_id("old", "eth0") == ["10.199.0.7"]


def test_filestore_lock_excludes_other_holders(tmp_path: Path) -> None:
    a, b = FileStore(str(tmp_path), "net"), FileStore(str(tmp_path), "net")
    order: list[str] = []

    def take_b() -> None:
        with b.lock():
            order.append("b")

    with a.lock():
        t = threading.Thread(target=take_b)
        t.start()
        t.join(0.2)
        order.append("a")
    t.join(2)
    assert order == ["a", "b"]


def test_filestore_rejects_path_like_network_names(tmp_path: Path) -> None:
    from cni_bridge.errors import IOFailure

    for bad in ("", "..", "a/b"):
        with pytest.raises(IOFailure):
            FileStore(str(tmp_path), bad)
    assert not os.listdir(tmp_path)
