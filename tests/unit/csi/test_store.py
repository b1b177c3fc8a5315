"""The record store: one conformance check that both implementations pass, plus the real
store's crash behaviour (leftover temp files, corrupt records)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from csi_hostpath.store import AtomicDirStore, MemoryStore, RecordStore


def check_record_store(factory: Callable[[], RecordStore]) -> None:
    """What every RecordStore must do; reusable for any new implementation."""
    store = factory()
    assert store.load("volumes") == {}
    store.put("volumes", "a", {"version": 1, "x": 1})
    store.put("volumes", "b", {"version": 1, "x": 2})
    store.put("volumes", "a", {"version": 1, "x": 3})
    store.put("node", "a", {"version": 1, "n": True})
    assert store.load("volumes") == {"a": {"version": 1, "x": 3}, "b": {"version": 1, "x": 2}}
    assert store.load("node") == {"a": {"version": 1, "n": True}}
    store.delete("volumes", "b")
    store.delete("volumes", "missing")
    assert set(store.load("volumes")) == {"a"}
    assert store.load("snapshots") == {}


def test_memory_store() -> None:
    check_record_store(MemoryStore)


def test_atomic_dir_store(tmp_path: Path) -> None:
    check_record_store(lambda: AtomicDirStore(str(tmp_path / "state")))
    # A second instance over the same directory sees the same records (a restart).
    assert set(AtomicDirStore(str(tmp_path / "state")).load("volumes")) == {"a"}


def test_leftover_temp_files_are_ignored_and_removed(tmp_path: Path) -> None:
    store = AtomicDirStore(str(tmp_path))
    store.put("volumes", "a", {"version": 1})
    tmp = tmp_path / "volumes" / ".a.123.tmp"
    tmp.write_text('{"half')
    assert store.load("volumes") == {"a": {"version": 1}}
    assert not tmp.exists()


def test_corrupt_record_is_quarantined(tmp_path: Path) -> None:
    store = AtomicDirStore(str(tmp_path))
    (tmp_path / "volumes" / "bad.json").write_text("{not json")
    (tmp_path / "volumes" / "list.json").write_text("[1]")
    store.put("volumes", "good", {"version": 1})
    assert set(store.load("volumes")) == {"good"}
    assert len(os.listdir(tmp_path / "quarantine")) == 2


def test_failed_write_leaves_old_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AtomicDirStore(str(tmp_path))
    store.put("volumes", "a", {"version": 1, "x": "old"})

    def boom(fd: int) -> None:
        raise OSError(5, "EIO")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="EIO"):
        store.put("volumes", "a", {"version": 1, "x": "new"})
    monkeypatch.undo()
    assert store.load("volumes") == {"a": {"version": 1, "x": "old"}}
    assert [p.name for p in (tmp_path / "volumes").iterdir()] == ["a.json"]


def test_unknown_kind_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown record kind"):
        AtomicDirStore(str(tmp_path)).put("../x", "a", {})
