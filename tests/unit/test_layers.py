"""Layer unpacking without root: pure helpers, and real tars unpacked into tmp dirs.

Everything here passes ``as_root=False`` so it behaves the same whoever runs it; ownership,
devices, whiteouts and xattrs are covered by tests/integration/test_layers_root.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import zstandard

from images import manifest as mf
from images.errors import LayerError, UnsafeLayerError
from images.layers import (
    Ignored,
    LayerStats,
    Opaque,
    Regular,
    Whiteout,
    classify_entry,
    safe_relpath,
    sniff_compression,
    unpack_layer,
)

MTIME = 1_600_000_000

# -- building tars -------------------------------------------------------------------------------

Entry = tuple[tarfile.TarInfo, bytes | None]


def file(name: str, data: bytes = b"", mode: int = 0o644, mtime: int = MTIME) -> Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, mtime
    return info, data


def directory(name: str, mode: int = 0o755, mtime: int = MTIME) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, mtime
    return info, None


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, target, MTIME
    return info, None


def special(name: str, kind: bytes, major: int = 0, minor: int = 0) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor, info.mode = kind, major, minor, 0o600
    info.mtime = MTIME
    return info, None


def make_tar(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def unpack(tar: bytes, target: Path, media_type: str = mf.MEDIA_TYPE_OCI_LAYER) -> LayerStats:
    target.mkdir(exist_ok=True)
    return unpack_layer(io.BytesIO(tar), media_type, str(target), as_root=False)


def diff_id(tar: bytes) -> str:
    return "sha256:" + hashlib.sha256(tar).hexdigest()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rel"),
    [
        ("a", "a"),
        ("./a/b", "a/b"),
        ("a//b/", "a/b"),
        ("a/./b", "a/b"),
        ("././a", "a"),
        (".", ""),
        ("./", ""),
        ("..a/b..", "..a/b.."),
        ("a/...", "a/..."),
    ],
)
def test_safe_relpath(name: str, rel: str) -> None:
    assert safe_relpath(name) == rel


@pytest.mark.parametrize(
    "name", ["", "/", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "./../x", "a\x00b"]
)
def test_safe_relpath_refuses(name: str) -> None:
    with pytest.raises(UnsafeLayerError):
        safe_relpath(name)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("etc/passwd", Regular("etc/passwd")),
        ("./etc/", Regular("etc")),
        ("etc/.wh.passwd", Whiteout("etc/passwd")),
        (".wh.etc", Whiteout("etc")),
        ("./a/b/.wh..wh..opq", Opaque("a/b")),
        (".wh..wh..opq", Opaque("")),
        ("a/.wh..wh.plnk", Ignored("a/.wh..wh.plnk")),
        ("a/.wh..wh.aufs", Ignored("a/.wh..wh.aufs")),
        ("a/x.wh.y", Regular("a/x.wh.y")),
        ("a/.wh.x/y", Regular("a/.wh.x/y")),
    ],
)
def test_classify_entry(name: str, kind: object) -> None:
    assert classify_entry(name) == kind


@pytest.mark.parametrize("name", ["a/.wh.", "a/.wh..", "a/.wh...", "../.wh.x", "/.wh.x"])
def test_classify_entry_refuses(name: str) -> None:
    with pytest.raises(UnsafeLayerError):
        classify_entry(name)


def test_sniff_compression() -> None:
    assert sniff_compression(b"\x1f\x8b\x08\x00") is mf.Compression.GZIP
    assert sniff_compression(b"\x28\xb5\x2f\xfd") is mf.Compression.ZSTD
    assert sniff_compression(b"etc/") is mf.Compression.NONE
    assert sniff_compression(b"") is mf.Compression.NONE


# -- unpacking -----------------------------------------------------------------------------------

BASIC = [
    directory("./"),
    directory("etc/", mode=0o755),
    file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", mode=0o644),
    directory("bin/", mode=0o711),
    file("bin/busybox", b"\x7fELF" + b"x" * 200_000, mode=0o755),
    link("bin/sh", "/bin/busybox"),
    link("bin/ls", "busybox"),
    link("bin/hard", "bin/busybox", tarfile.LNKTYPE),
    file("implicit/parent/file", b"data", mode=0o600),
    file("setuid", b"", mode=0o4755),
    file("sticky-dir-file", b"", mode=0o1644),
    special("fifo", tarfile.FIFOTYPE),
]


def _gzip(tar: bytes) -> bytes:
    return gzip.compress(tar)


def _zstd(tar: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(tar)


@pytest.mark.parametrize(
    ("compress", "media_type"),
    [
        (lambda t: t, mf.MEDIA_TYPE_OCI_LAYER),
        (_gzip, mf.MEDIA_TYPE_OCI_LAYER_GZIP),
        (_gzip, mf.MEDIA_TYPE_DOCKER_LAYER_GZIP),
        (_zstd, mf.MEDIA_TYPE_OCI_LAYER_ZSTD),
        # mislabelled blobs: the magic bytes decide
        (lambda t: t, mf.MEDIA_TYPE_OCI_LAYER_GZIP),
        (_gzip, mf.MEDIA_TYPE_OCI_LAYER),
        (_zstd, "application/x-unknown"),
    ],
)
def test_unpack_formats(
    tmp_path: Path, compress: Callable[[bytes], bytes], media_type: str
) -> None:
    tar = make_tar(BASIC)
    target = tmp_path / "t"
    stats = unpack(compress(tar), target, media_type)
    assert stats == LayerStats(diff_id=diff_id(tar), size=len(tar), entries=len(BASIC))
    _check_basic(target)


def _check_basic(t: Path) -> None:
    assert (t / "etc/passwd").read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert (t / "bin/busybox").stat().st_size == 200_004
    assert os.readlink(t / "bin/sh") == "/bin/busybox"
    assert os.readlink(t / "bin/ls") == "busybox"
    assert (t / "bin/hard").stat().st_ino == (t / "bin/busybox").stat().st_ino
    assert stat.S_IMODE((t / "bin").stat().st_mode) == 0o711
    assert stat.S_IMODE((t / "bin/busybox").stat().st_mode) == 0o755
    assert stat.S_IMODE((t / "implicit").stat().st_mode) == 0o755
    assert stat.S_IMODE((t / "implicit/parent/file").stat().st_mode) == 0o600
    assert stat.S_IMODE((t / "setuid").stat().st_mode) == 0o4755
    assert stat.S_IMODE((t / "sticky-dir-file").stat().st_mode) == 0o1644
    assert stat.S_ISFIFO((t / "fifo").lstat().st_mode)
    for p in ("etc", "bin", "etc/passwd", "bin/busybox", "fifo"):
        assert (t / p).lstat().st_mtime == MTIME, p
    assert (t / "bin/sh").lstat().st_mtime == MTIME
    assert t.stat().st_mtime == MTIME  # the "./" entry applies to the target itself


def test_bigger_file_content(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"
    tar = make_tar([file("big", data)])
    unpack(_gzip(tar), tmp_path / "t", mf.MEDIA_TYPE_OCI_LAYER_GZIP)
    assert (tmp_path / "t/big").read_bytes() == data


def test_diff_id_covers_padding_after_end_of_archive(tmp_path: Path) -> None:
    tar = make_tar([file("a", b"x")]) + b"\x00" * 20480
    stats = unpack(_gzip(tar), tmp_path / "t")
    assert stats.diff_id == diff_id(tar)
    assert stats.size == len(tar)


def test_multi_member_gzip_and_padding(tmp_path: Path) -> None:
    tar = make_tar([file("a", b"x" * 5000), file("b", b"y")])
    blob = gzip.compress(tar[:3000]) + gzip.compress(tar[3000:]) + b"\x00" * 100
    stats = unpack(blob, tmp_path / "t", mf.MEDIA_TYPE_OCI_LAYER_GZIP)
    assert stats.diff_id == diff_id(tar)
    assert (tmp_path / "t/b").read_bytes() == b"y"


def test_multi_frame_zstd(tmp_path: Path) -> None:
    tar = make_tar([file("a", b"x" * 5000), file("b", b"y")])
    blob = _zstd(tar[:3000]) + _zstd(tar[3000:])
    stats = unpack(blob, tmp_path / "t", mf.MEDIA_TYPE_OCI_LAYER_ZSTD)
    assert stats.diff_id == diff_id(tar)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_gnu_sparse_files(tmp_path: Path, fmt: str) -> None:
    tar = shutil.which("tar")
    if tar is None:
        pytest.skip("GNU tar is needed to write sparse archives")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(3 << 20)
        f.write(b"tail")
    archive = tmp_path / "sparse.tar"
    subprocess.run(
        [tar, "--sparse", f"--format={fmt}", "-C", str(src), "-cf", str(archive), "sparse"],
        check=True,
    )
    unpack(archive.read_bytes(), tmp_path / "t")
    assert (tmp_path / "t/sparse").read_bytes() == (src / "sparse").read_bytes()
    assert os.listdir(tmp_path / "t") == ["sparse"]


def test_pax_mtime_nanoseconds(tmp_path: Path) -> None:
    info, data = file("a", b"x")
    info.pax_headers = {"mtime": "1600000000.123456789"}
    unpack(make_tar([(info, data)]), tmp_path / "t")
    assert (tmp_path / "t/a").stat().st_mtime_ns == 1_600_000_000_123_456_789


def test_empty_layer(tmp_path: Path) -> None:
    tar = make_tar([])
    stats = unpack(_gzip(tar), tmp_path / "t")
    assert stats.entries == 0
    assert stats.diff_id == diff_id(tar)
    assert tree(tmp_path / "t") == set()


def test_read_only_directory_gets_its_mode_last(tmp_path: Path) -> None:
    tar = make_tar([directory("ro", mode=0o555), file("ro/f", b"1"), directory("ro/sub")])
    unpack(tar, tmp_path / "t")
    assert stat.S_IMODE((tmp_path / "t/ro").stat().st_mode) == 0o555
    assert (tmp_path / "t/ro/f").read_bytes() == b"1"
    (tmp_path / "t/ro").chmod(0o755)  # so tmp_path can be cleaned up


def test_devices_skipped_without_root(tmp_path: Path) -> None:
    tar = make_tar([special("dev/null", tarfile.CHRTYPE, 1, 3), special("sda", tarfile.BLKTYPE)])
    stats = unpack(tar, tmp_path / "t")
    assert stats.skipped_devices == 2
    assert tree(tmp_path / "t") == {"dev"}


# -- later entries replace earlier ones ------------------------------------------------------------


def test_file_replaces_file_and_keeps_old_hardlink(tmp_path: Path) -> None:
    tar = make_tar([file("a", b"old"), link("b", "a", tarfile.LNKTYPE), file("a", b"new")])
    unpack(tar, tmp_path / "t")
    assert (tmp_path / "t/a").read_bytes() == b"new"
    assert (tmp_path / "t/b").read_bytes() == b"old"


def test_dir_replaces_file_and_file_replaces_dir(tmp_path: Path) -> None:
    tar = make_tar(
        [
            file("x", b"f"),
            directory("x"),
            file("x/inner", b"i"),
            directory("y", mode=0o700),
            file("y/deep/z", b"z"),
            file("y", b"now a file"),
        ]
    )
    unpack(tar, tmp_path / "t")
    assert (tmp_path / "t/x/inner").read_bytes() == b"i"
    assert (tmp_path / "t/y").read_bytes() == b"now a file"


def test_dir_entry_merges_with_existing_dir(tmp_path: Path) -> None:
    tar = make_tar([directory("d", mode=0o700), file("d/a", b"a"), directory("d", mode=0o750)])
    unpack(tar, tmp_path / "t")
    assert (tmp_path / "t/d/a").exists()
    assert stat.S_IMODE((tmp_path / "t/d").stat().st_mode) == 0o750


def test_symlink_replaced_by_file_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    tar = make_tar([link("s", str(outside)), file("s", b"mine")])
    unpack(tar, tmp_path / "t")
    assert outside.read_bytes() == b"keep"
    assert (tmp_path / "t/s").read_bytes() == b"mine"
    assert not (tmp_path / "t/s").is_symlink()


def test_dir_replaced_by_symlink_then_entry_below_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    tar = make_tar([directory("d"), file("d/a", b"a"), link("d", str(sentinel)), file("d/b", b"b")])
    with pytest.raises(UnsafeLayerError, match="symlink"):
        unpack(tar, tmp_path / "t")
    assert list(sentinel.iterdir()) == []


def test_hardlink_to_itself_is_harmless(tmp_path: Path) -> None:
    tar = make_tar([file("a", b"1"), link("a", "a", tarfile.LNKTYPE)])
    unpack(tar, tmp_path / "t")
    assert (tmp_path / "t/a").read_bytes() == b"1"


def test_many_directories_exceed_the_fd_cache(tmp_path: Path) -> None:
    entries = [file(f"d{i}/sub/f", str(i).encode()) for i in range(200)]
    entries += [link(f"d{i}/sub/h", f"d{199 - i}/sub/f", tarfile.LNKTYPE) for i in range(200)]
    deep = "/".join(f"n{i}" for i in range(100))
    entries += [file(f"{deep}/leaf", b"deep"), link("deeplink", f"{deep}/leaf", tarfile.LNKTYPE)]
    unpack(make_tar(entries), tmp_path / "t")
    assert (tmp_path / "t/d0/sub/h").read_bytes() == b"199"
    assert (tmp_path / "t/deeplink").read_bytes() == b"deep"


# -- errors --------------------------------------------------------------------------------------


# Symlinks point into tmp_path (never /tmp or /etc), so a regression cannot touch the host.
UNSAFE: list[Callable[[str], list[Entry]]] = [
    lambda out: [file("../x", b"x")],
    lambda out: [file("a/../../x", b"x")],
    lambda out: [file("/abs/x", b"x")],
    lambda out: [link("h", "/etc/passwd", tarfile.LNKTYPE)],
    lambda out: [link("h", "../outside", tarfile.LNKTYPE)],
    lambda out: [link("h", "missing", tarfile.LNKTYPE)],
    lambda out: [link("evil", out), file("evil/file", b"x")],
    lambda out: [link("evil", ".."), file("evil/x", b"x")],
    lambda out: [link("evil", out), link("h", "evil/victim", tarfile.LNKTYPE)],
]


@pytest.mark.parametrize("build", UNSAFE)
def test_unsafe_entries(tmp_path: Path, build: Callable[[str], list[Entry]]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"v")
    (tmp_path / "a").mkdir()
    with pytest.raises(UnsafeLayerError):
        unpack(make_tar(build(str(outside))), tmp_path / "a/target")
    assert tree(tmp_path) <= {"a", "a/target", "a/target/evil", "outside", "outside/victim"}
    assert (outside / "victim").stat().st_nlink == 1


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x1f\x8b" + b"garbage" * 100, "does not decompress"),
        (gzip.compress(make_tar([file("a", os.urandom(100_000))]))[:-2000], "truncated"),
        (b"\x28\xb5\x2f\xfd" + b"garbage" * 100, "does not decompress"),
        (b"not a tar at all" * 100, "not a valid tar"),
        (make_tar([file("a", b"x" * 100_000)])[:5000], "not a valid tar"),
        (b"", "not a valid tar"),
        (gzip.compress(make_tar([])) + b"trailing garbage", "does not decompress"),
    ],
)
def test_corrupt_layers(tmp_path: Path, blob: bytes, message: str) -> None:
    with pytest.raises(LayerError, match=message):
        unpack(blob, tmp_path / "t")


def test_unknown_entry_type(tmp_path: Path) -> None:
    info = tarfile.TarInfo("weird")
    info.type = b"Z"
    with pytest.raises(LayerError, match="unsupported tar type"):
        unpack(make_tar([(info, None)]), tmp_path / "t")


def test_hardlink_to_directory(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="hardlink to directory"):
        unpack(make_tar([directory("d"), link("h", "d", tarfile.LNKTYPE)]), tmp_path / "t")


def test_file_under_a_file(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="not a directory"):
        unpack(make_tar([file("f", b""), file("f/g", b"")]), tmp_path / "t")


def test_root_replaced_by_file(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="layer root"):
        unpack(make_tar([file("./", b"")]), tmp_path / "t")


def test_target_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t/x").touch()
    with pytest.raises(LayerError, match="not empty"):
        unpack(make_tar([]), tmp_path / "t")


def test_refuses_non_layer_media_type(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="not a layer"):
        unpack(make_tar([]), tmp_path / "t", mf.MEDIA_TYPE_OCI_MANIFEST)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_fd_leaks(tmp_path: Path) -> None:
    entries = [file(f"d{i}/f", b"x") for i in range(100)]
    before = _open_fds()
    unpack(make_tar(entries), tmp_path / "ok")
    with pytest.raises(UnsafeLayerError):
        unpack(make_tar([*entries, link("s", ".."), file("s/x", b"")]), tmp_path / "bad")
    with pytest.raises(LayerError):
        unpack(gzip.compress(make_tar(entries))[:-100], tmp_path / "truncated")
    assert _open_fds() == before
