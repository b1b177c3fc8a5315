"""Layer unpacking as root: ownership, devices, whiteouts, xattrs, and a hostile corpus.

The hostile corpus is generated here with tarfile. Each layer must raise UnsafeLayerError and
leave no trace outside its target: the target lives at ``tmp/a/target`` and ``tmp/a`` must hold
nothing else afterwards, a sentinel directory that symlinks point at must stay empty, and files
hardlinks aim at must keep their link count.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from images import manifest as mf
from images.errors import UnsafeLayerError
from images.layers import LayerStats, unpack_layer

pytestmark = pytest.mark.root

MTIME = 1_600_000_000

Entry = tuple[tarfile.TarInfo, bytes | None]


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (chown, mknod, trusted.* xattrs)")


def entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes | None = None,
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    linkname: str = "",
    dev: tuple[int, int] = (0, 0),
    pax: dict[str, str] | None = None,
) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, MTIME
    info.linkname = linkname
    info.devmajor, info.devminor = dev
    info.size = len(data) if data is not None else 0
    info.pax_headers = pax or {}
    return info, data


def make_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    t = tmp_path / "a" / "target"
    t.mkdir(parents=True)
    yield t
    shutil.rmtree(tmp_path / "a", ignore_errors=True)


def unpack(entries: list[Entry], target: Path) -> LayerStats:
    blob = make_tar(entries)
    return unpack_layer(io.BytesIO(blob), mf.MEDIA_TYPE_OCI_LAYER, str(target))


def _owner(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid


# -- metadata ------------------------------------------------------------------------------------


def test_ownership(target: Path) -> None:
    unpack(
        [
            entry("d", tarfile.DIRTYPE, mode=0o700, uid=1234, gid=5678),
            entry("d/f", data=b"x", uid=1000, gid=1001),
            entry("d/s", tarfile.SYMTYPE, linkname="/nowhere", uid=42, gid=43),
            entry("d/h", tarfile.LNKTYPE, linkname="d/f"),
            entry("p", tarfile.FIFOTYPE, uid=7, gid=8),
        ],
        target,
    )
    assert _owner(target / "d") == (1234, 5678)
    assert stat.S_IMODE((target / "d").stat().st_mode) == 0o700
    assert _owner(target / "d/f") == (1000, 1001)
    assert _owner(target / "d/s") == (42, 43)
    assert _owner(target / "d/h") == (1000, 1001)
    assert _owner(target / "p") == (7, 8)
    assert (target / "d").stat().st_mtime == MTIME
    assert (target / "d/s").lstat().st_mtime == MTIME


def test_setuid_setgid_sticky_survive_chown(target: Path) -> None:
    unpack(
        [
            entry("suid", data=b"x", mode=0o4755, uid=1000, gid=1000),
            entry("sgid", data=b"x", mode=0o2755, uid=1000, gid=50),
            entry("tmp", tarfile.DIRTYPE, mode=0o1777, uid=1000),
            entry("sgid-dir", tarfile.DIRTYPE, mode=0o2775, gid=50),
        ],
        target,
    )
    assert stat.S_IMODE((target / "suid").stat().st_mode) == 0o4755
    assert stat.S_IMODE((target / "sgid").stat().st_mode) == 0o2755
    assert stat.S_IMODE((target / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((target / "sgid-dir").stat().st_mode) == 0o2775


def test_devices(target: Path) -> None:
    stats = unpack(
        [
            entry("dev", tarfile.DIRTYPE, mode=0o755),
            entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
            entry("dev/loop9", tarfile.BLKTYPE, mode=0o660, gid=6, dev=(7, 9)),
        ],
        target,
    )
    assert stats.skipped_devices == 0
    null = (target / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    loop = (target / "dev/loop9").lstat()
    assert stat.S_ISBLK(loop.st_mode)
    assert loop.st_gid == 6
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 9)


def _is_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def test_whiteouts_and_opaque_dirs(target: Path) -> None:
    unpack(
        [
            entry("etc", tarfile.DIRTYPE, mode=0o755),
            entry("etc/.wh.motd"),
            entry("var/lib/.wh.cache"),  # parents not listed: created
            entry("opt", tarfile.DIRTYPE, mode=0o755),
            entry("opt/.wh..wh..opq"),
            entry("opt/new", data=b"n"),
            entry(".wh..wh.plnk"),  # aufs bookkeeping: ignored
            entry(".wh.gone"),
        ],
        target,
    )
    assert _is_whiteout(target / "etc/motd")
    assert _is_whiteout(target / "var/lib/cache")
    assert _is_whiteout(target / "gone")
    assert os.getxattr(target / "opt", "trusted.overlay.opaque") == b"y"
    assert (target / "opt/new").read_bytes() == b"n"
    assert sorted(os.listdir(target)) == ["etc", "gone", "opt", "var"]
    with pytest.raises(OSError, match="No data"):
        os.getxattr(target / "etc", "trusted.overlay.opaque")


def test_root_opaque(target: Path) -> None:
    unpack([entry(".wh..wh..opq")], target)
    assert os.getxattr(target, "trusted.overlay.opaque") == b"y"


@pytest.mark.parametrize("whiteout_first", [True, False])
def test_whiteout_never_hides_its_own_layer(target: Path, whiteout_first: bool) -> None:
    pair = [entry(".wh.f"), entry("f", data=b"mine")]
    unpack(pair if whiteout_first else pair[::-1], target)
    assert (target / "f").read_bytes() == b"mine"


@pytest.mark.parametrize(
    "names",
    [
        [".wh.a", "a/b"],  # recreated through an implicit parent
        [".wh.a", "a/", "a/b"],  # recreated by a directory entry
        ["a/", "a/b", ".wh.a"],  # whiteout after the directory
    ],
)
def test_whiteout_and_directory_in_one_layer_make_it_opaque(target: Path, names: list[str]) -> None:
    unpack(
        [entry(n, tarfile.DIRTYPE if n.endswith("/") else tarfile.REGTYPE) for n in names], target
    )
    assert (target / "a").is_dir()
    assert (target / "a/b").is_file()
    assert os.getxattr(target / "a", "trusted.overlay.opaque") == b"y"


def test_xattrs(target: Path) -> None:
    # VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_RAW (bit 13): what `setcap` writes.
    cap = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
    binary = b"\xff\xfe\x00\x80"
    pax = {
        "SCHILY.xattr.user.plain": "hello",
        "SCHILY.xattr.user.binary": binary.decode("utf-8", "surrogateescape"),
        "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
    }
    stats = unpack(
        [
            entry("ping", data=b"\x7fELF", mode=0o755, uid=0, gid=0, pax=pax),
            entry("d", tarfile.DIRTYPE, pax={"SCHILY.xattr.trusted.mark": "dir"}),
            entry("s", tarfile.SYMTYPE, linkname="ping", pax={"SCHILY.xattr.trusted.l": "1"}),
            entry(
                "sneaky",
                tarfile.DIRTYPE,
                pax={
                    "SCHILY.xattr.trusted.overlay.redirect": "/etc",
                    "SCHILY.xattr.trusted.overlay.opaque": "y",
                },
            ),
        ],
        target,
    )
    assert os.getxattr(target / "ping", "user.plain") == b"hello"
    assert os.getxattr(target / "ping", "user.binary") == binary
    assert os.getxattr(target / "ping", "security.capability") == cap
    assert os.getxattr(target / "d", "trusted.mark") == b"dir"
    assert os.getxattr(target / "s", "trusted.l", follow_symlinks=False) == b"1"
    assert os.listxattr(target / "sneaky") == []
    assert stats.skipped_xattrs == 2


# -- hostile corpus ------------------------------------------------------------------------------


@dataclass
class Victims:
    sentinel: Path  # symlinks point here; must stay empty
    victim: Path  # hardlinks aim at this; must keep one link
    victim_dir: Path


@pytest.fixture
def victims(tmp_path: Path) -> Victims:
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    victim_dir = tmp_path / "victim-dir"
    victim_dir.mkdir()
    victim = victim_dir / "victim"
    victim.write_bytes(b"precious")
    return Victims(sentinel, victim, victim_dir)


def hostile_layers(v: Victims) -> dict[str, list[Entry]]:
    sym = tarfile.SYMTYPE
    hard = tarfile.LNKTYPE
    return {
        "dotdot": [entry("../x", data=b"x")],
        "dotdot-inside": [entry("a/../../x", data=b"x")],
        "dotdot-dir": [entry("../d", tarfile.DIRTYPE)],
        "absolute": [entry("/abs/x", data=b"x")],
        "absolute-symlink-name": [entry("/abs", sym, linkname="x")],
        "pax-path-dotdot": [entry("ok", data=b"x", pax={"path": "x/../../y"})],
        "long-name-dotdot": [entry("a/" * 60 + "../" * 62 + "x", data=b"x")],
        "symlink-abs-parent": [
            entry("evil", sym, linkname=str(v.sentinel)),
            entry("evil/file", data=b"x"),
        ],
        "symlink-dotdot-parent": [entry("evil", sym, linkname=".."), entry("evil/x", data=b"x")],
        "symlink-deep-parent": [
            entry("a/b", tarfile.DIRTYPE),
            entry("a/b/c", sym, linkname=str(v.sentinel)),
            entry("a/b/c/d/e", data=b"x"),
        ],
        "symlink-parent-dir-entry": [
            entry("evil", sym, linkname=str(v.sentinel)),
            entry("evil/sub", tarfile.DIRTYPE),
        ],
        "symlink-parent-symlink": [
            entry("evil", sym, linkname=str(v.sentinel)),
            entry("evil/s", sym, linkname="/etc/passwd"),
        ],
        "symlink-parent-fifo": [
            entry("evil", sym, linkname=str(v.sentinel)),
            entry("evil/p", tarfile.FIFOTYPE),
        ],
        "symlink-parent-device": [
            entry("evil", sym, linkname=str(v.sentinel)),
            entry("evil/null", tarfile.CHRTYPE, dev=(1, 3)),
        ],
        "symlink-parent-hardlink": [
            entry("f", data=b"x"),
            entry("evil", sym, linkname=str(v.sentinel)),
            entry("evil/h", hard, linkname="f"),
        ],
        "symlink-parent-whiteout": [
            entry("evil", sym, linkname=str(v.sentinel)),
            entry("evil/.wh.x"),
        ],
        "symlink-parent-opaque": [
            entry("evil", sym, linkname=str(v.sentinel)),
            entry("evil/.wh..wh..opq"),
        ],
        "dir-replaced-by-symlink": [
            entry("d", tarfile.DIRTYPE),
            entry("d/a", data=b"a"),
            entry("d", sym, linkname=str(v.sentinel)),
            entry("d/b", data=b"b"),
        ],
        "whiteout-dotdot": [entry("../.wh.x")],
        "whiteout-of-dotdot": [entry("a/.wh...")],
        "device-dotdot": [entry("../null", tarfile.CHRTYPE, dev=(1, 3))],
        "hardlink-absolute": [entry("h", hard, linkname="/etc/passwd")],
        "hardlink-victim": [entry("h", hard, linkname=str(v.victim))],
        "hardlink-dotdot": [entry("h", hard, linkname="../outside")],
        "hardlink-dotdot-victim": [entry("h", hard, linkname="../../victim-dir/victim")],
        "hardlink-missing": [entry("h", hard, linkname="nothing/here")],
        "hardlink-through-symlinked-dir": [
            entry("d", sym, linkname=str(v.victim_dir)),
            entry("h", hard, linkname="d/victim"),
        ],
        "hardlink-through-dotdot-symlink": [
            entry("up", sym, linkname="../.."),
            entry("h", hard, linkname="up/victim-dir/victim"),
        ],
    }


def _hostile_names() -> list[str]:
    return list(hostile_layers(Victims(Path("/s"), Path("/v/v"), Path("/v"))))


@pytest.mark.parametrize("name", _hostile_names())
def test_hostile_layer_is_refused(
    tmp_path: Path, target: Path, victims: Victims, name: str
) -> None:
    passwd = os.stat("/etc/passwd")
    with pytest.raises(UnsafeLayerError) as info:
        unpack(hostile_layers(victims)[name], target)
    assert "layer entry" in str(info.value)
    _assert_no_escape(tmp_path, victims, passwd)


def _assert_no_escape(tmp_path: Path, v: Victims, passwd: os.stat_result) -> None:
    assert os.listdir(tmp_path / "a") == ["target"]
    assert sorted(os.listdir(tmp_path)) == ["a", "sentinel", "victim-dir"]
    assert os.listdir(v.sentinel) == []
    assert os.listxattr(v.sentinel) == []
    assert os.listdir(v.victim_dir) == ["victim"]
    assert v.victim.stat().st_nlink == 1
    assert v.victim.read_bytes() == b"precious"
    after = os.stat("/etc/passwd")
    assert (after.st_nlink, after.st_mtime_ns, after.st_size) == (
        passwd.st_nlink,
        passwd.st_mtime_ns,
        passwd.st_size,
    )


def test_overrides_replace_symlinks_without_following_them(
    tmp_path: Path, target: Path, victims: Victims
) -> None:
    passwd = os.stat("/etc/passwd")
    sym = tarfile.SYMTYPE
    unpack(
        [
            # a file entry replaces a dir symlink
            entry("f", sym, linkname=str(victims.sentinel)),
            entry("f", data=b"file"),
            # a directory entry replaces a dir symlink; content goes into the new dir
            entry("d", sym, linkname=str(victims.sentinel)),
            entry("d", tarfile.DIRTYPE),
            entry("d/x", data=b"x"),
            # a file entry replaces a symlink to a file outside
            entry("v", sym, linkname=str(victims.victim)),
            entry("v", data=b"overwritten?"),
            # a hardlink to a symlink links the symlink itself
            entry("pw", sym, linkname="/etc/passwd"),
            entry("pw-hard", tarfile.LNKTYPE, linkname="pw"),
            # devices and fifos replace symlinks too
            entry("n", sym, linkname=str(victims.sentinel)),
            entry("n", tarfile.CHRTYPE, dev=(1, 3)),
            entry("o", sym, linkname=str(victims.victim)),
            entry("o", tarfile.FIFOTYPE),
        ],
        target,
    )
    assert (target / "f").read_bytes() == b"file"
    assert (target / "d").is_dir()
    assert not (target / "d").is_symlink()
    assert (target / "d/x").read_bytes() == b"x"
    assert (target / "v").read_bytes() == b"overwritten?"
    assert os.readlink(target / "pw-hard") == "/etc/passwd"
    assert (target / "pw").lstat().st_ino == (target / "pw-hard").lstat().st_ino
    assert stat.S_ISCHR((target / "n").lstat().st_mode)
    assert stat.S_ISFIFO((target / "o").lstat().st_mode)
    _assert_no_escape(tmp_path, victims, passwd)
