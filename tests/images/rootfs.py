"""Assemble small root filesystems from Debian packages without installing anything on the host.

Theory of operation: `DebCache` fetches `.deb` files with `apt-get download` into a cache
directory (reused when present) and unpacks each with `dpkg-deb -x` into its own staging
directory. A `RootfsWriter` then copies only what an image needs into a fresh tree: the wanted
binaries, plus every shared library they need, found by following the ELF `NEEDED` entries
through the staging trees (never the host's libraries, so the image does not depend on what
this machine has installed). A missing library is an error naming the soname: add its package
to the image's package list.

Every directory and file the writer creates gets an explicit mode, so the tree (and hence the
layer built from it) does not depend on the caller's umask.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BASE_GROUPS",
    "BASE_USERS",
    "BUSYBOX_PACKAGES",
    "DEFAULT_CACHE",
    "NGINX_PACKAGES",
    "PATH_ENV",
    "DebCache",
    "Group",
    "RootfsError",
    "RootfsWriter",
    "Staging",
    "User",
    "build_busybox_rootfs",
    "build_nginx_tree",
    "compile_static",
    "group_text",
    "nginx_conf",
    "passwd_text",
]

DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".cache"

# Debian's dynamic busybox, not busybox-static: the static build runs applets in-process from
# `sh`, so critest's masked-path check (`sh -c ls` with /bin/ls masked) would not see EACCES.
# procps and util-linux supply `pgrep` and `ipcs`, which Debian's busybox leaves out.
BUSYBOX_PACKAGES = (
    "busybox",
    "libc6",
    "procps",
    "libproc2-0",
    "libsystemd0",
    "libcap2",
    "libgcrypt20",
    "libgpg-error0",
    "liblzma5",
    "libzstd1",
    "liblz4-1",
    "util-linux",
)
NGINX_PACKAGES = (
    "nginx",
    "nginx-common",
    "libc6",
    "libcrypt1",
    "libpcre2-8-0",
    "libssl3",
    "zlib1g",
)

_INTERPRETER = "lib64/ld-linux-x86-64.so.2"
_LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib", "lib64")
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RootfsError(Exception):
    """A package could not be fetched or a binary's dependencies could not be satisfied."""


# --- accounts (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str = "/nonexistent"
    shell: str = "/bin/false"
    gecos: str = ""


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: tuple[str, ...] = ()


BASE_USERS = (
    User("root", 0, 0, "/root", "/bin/sh", "root"),
    User("daemon", 1, 1, "/usr/sbin", gecos="daemon"),
    User("www-data", 33, 33, "/var/www", gecos="www-data"),
    User("nobody", 65534, 65534, "/home", gecos="nobody"),
)
BASE_GROUPS = (
    Group("root", 0),
    Group("daemon", 1),
    Group("tty", 5),
    Group("www-data", 33),
    Group("users", 100),
    Group("nogroup", 65534),
)


def passwd_text(users: Iterable[User]) -> str:
    return "".join(f"{u.name}:x:{u.uid}:{u.gid}:{u.gecos}:{u.home}:{u.shell}\n" for u in users)


def group_text(groups: Iterable[Group]) -> str:
    return "".join(f"{g.name}:x:{g.gid}:{','.join(g.members)}\n" for g in groups)


def nginx_conf(port: int) -> str:
    """Our own minimal nginx.conf: master + 2 workers, pid where critest looks for it."""
    return f"""\
user www-data;
worker_processes 2;
pid /var/run/nginx.pid;
error_log /var/log/nginx/error.log notice;

events {{
    worker_connections 256;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    sendfile on;
    keepalive_timeout 65;

    server {{
        listen {port};
        server_name localhost;
        location / {{
            root /usr/share/nginx/html;
            index index.html;
        }}
    }}
}}
"""


_INDEX_HTML = """\
<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1><p>Stowage test image.</p></body></html>
"""


# --- packages ------------------------------------------------------------------------------


def _run(argv: Sequence[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError as exc:
        raise RootfsError(f"{argv[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise RootfsError(f"{' '.join(argv)} failed: {exc.stderr.strip()}") from exc
    return done.stdout


class DebCache:
    """Downloaded `.deb` files and their unpacked trees, kept between runs."""

    def __init__(self, cache_dir: Path = DEFAULT_CACHE) -> None:
        self.debs = cache_dir / "debs"
        self.staging = cache_dir / "staging"

    def _cached(self, package: str) -> Path | None:
        # "<name>_<version>_<arch>.deb"; the "_" keeps "nginx" from matching "nginx-common".
        found = sorted(self.debs.glob(f"{package}_*.deb"))
        if len(found) > 1:
            raise RootfsError(f"several cached versions of {package}: {[p.name for p in found]}")
        return found[0] if found else None

    def fetch(self, packages: Iterable[str]) -> dict[str, Path]:
        """Package name -> cached .deb, downloading the missing ones in one apt-get call."""
        wanted = sorted(set(packages))
        missing = [p for p in wanted if self._cached(p) is None]
        if missing:
            self.debs.mkdir(parents=True, exist_ok=True)
            _run(["apt-get", "download", "-q", *missing], cwd=self.debs)
        result: dict[str, Path] = {}
        for package in wanted:
            deb = self._cached(package)
            if deb is None:
                raise RootfsError(f"apt-get download did not produce {package}")
            result[package] = deb
        return result

    def unpack(self, packages: Iterable[str]) -> list[Path]:
        """Staging trees for `packages` (in the given order), unpacking each deb once."""
        debs = self.fetch(packages)
        trees: list[Path] = []
        for package in packages:
            deb = debs[package]
            tree = self.staging / deb.name.removesuffix(".deb")
            if not tree.is_dir():
                tmp = tree.with_name(tree.name + f".{os.getpid()}.tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                _run(["dpkg-deb", "-x", str(deb), str(tmp)])
                try:
                    os.replace(tmp, tree)
                except OSError:
                    # Another build unpacked the same deb meanwhile; theirs is as good.
                    shutil.rmtree(tmp)
                    if not tree.is_dir():
                        raise
            trees.append(tree)
        return trees


# --- ELF dependencies ----------------------------------------------------------------------


def _needed(binary: Path) -> list[str]:
    out = _run(["readelf", "-d", "-W", str(binary)])
    return [
        line.rsplit("[", 1)[1].rstrip("]")
        for line in out.splitlines()
        if "(NEEDED)" in line and "[" in line
    ]


def _interpreter(binary: Path) -> str | None:
    out = _run(["readelf", "-l", "-W", str(binary)])
    marker = "Requesting program interpreter:"
    for line in out.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip(" []")
    return None


class Staging:
    """Path lookup across several unpacked packages, with symlinks resolved inside them."""

    def __init__(self, trees: Sequence[Path]) -> None:
        self.trees = list(trees)

    def _lookup(self, rel: str) -> Path | None:
        for tree in self.trees:
            candidate = tree / rel
            if candidate.is_symlink() or candidate.exists():
                return candidate
        return None

    def resolve(self, rel: str) -> tuple[str, Path]:
        """(final relative path, real file) for `rel`, following symlinks within the trees."""
        rel = rel.strip("/")
        for _ in range(32):
            found = self._lookup(rel)
            if found is None:
                raise RootfsError(f"{rel} is in none of the unpacked packages")
            if not found.is_symlink():
                return rel, found
            target = os.readlink(found)
            rel = posixpath.normpath(
                target.lstrip("/")
                if target.startswith("/")
                else posixpath.join(posixpath.dirname(rel), target)
            )
        raise RootfsError(f"symlink loop at {rel}")

    def library(self, soname: str) -> tuple[str, Path]:
        """(directory it belongs in, real file) for a shared library."""
        for libdir in _LIB_DIRS:
            if self._lookup(f"{libdir}/{soname}") is not None:
                _, real = self.resolve(f"{libdir}/{soname}")
                return libdir, real
        raise RootfsError(f"no unpacked package provides {soname}; add its package")


# --- writing a tree ------------------------------------------------------------------------


class RootfsWriter:
    """Writes into `root`; `lower` trees count as already present (for upper layers)."""

    def __init__(self, root: Path, lower: Sequence[Path] = ()) -> None:
        self.root = root
        self.lower = list(lower)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)  # noqa: S103 - an image's directories are world-readable by design

    def exists(self, rel: str) -> bool:
        rel = rel.strip("/")
        return any((t / rel).is_symlink() or (t / rel).exists() for t in [self.root, *self.lower])

    def mkdir(self, rel: str, mode: int = 0o755) -> Path:
        path = self.root
        parts = rel.strip("/").split("/")
        for i, part in enumerate(parts):
            path = path / part
            if not path.is_dir():
                path.mkdir()
                # Intermediate directories are always 0755; only the leaf gets `mode`.
                os.chmod(path, 0o755)  # noqa: S103 - as above: image tree, not host state
            if i == len(parts) - 1:
                os.chmod(path, mode)
        return path

    def _parent(self, rel: str) -> Path:
        rel = rel.strip("/")
        parent = posixpath.dirname(rel)
        if parent and not (self.root / parent).is_dir():
            self.mkdir(parent)
        return self.root / rel

    def write(self, rel: str, data: str | bytes, mode: int = 0o644) -> None:
        path = self._parent(rel)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(path, mode)

    def copy(self, source: Path, rel: str, mode: int | None = None) -> None:
        path = self._parent(rel)
        shutil.copyfile(source, path)
        os.chmod(path, mode if mode is not None else (source.stat().st_mode & 0o7777))

    def hardlink(self, existing: str, rel: str) -> None:
        path = self._parent(rel)
        path.unlink(missing_ok=True)
        os.link(self.root / existing.strip("/"), path)

    def symlink(self, target: str, rel: str) -> None:
        path = self._parent(rel)
        path.unlink(missing_ok=True)
        path.symlink_to(target)

    def install_elf(self, staging: Staging, rel: str, dest: str | None = None) -> None:
        """Copy a binary from the staging trees and, transitively, the libraries it needs."""
        _, real = staging.resolve(rel)
        self.copy(real, dest or rel)
        pending = [real]
        seen: set[str] = set()
        while pending:
            elf = pending.pop()
            interp = _interpreter(elf)
            if interp and not self.exists(interp):
                _, loader = staging.resolve(interp)
                self.copy(loader, interp)
            for soname in _needed(elf):
                if soname in seen:
                    continue
                seen.add(soname)
                libdir, lib = staging.library(soname)
                # Libraries land under their soname as plain files: no symlink chains needed.
                if not any(self.exists(f"{d}/{soname}") for d in _LIB_DIRS):
                    self.copy(lib, f"{libdir}/{soname}")
                pending.append(lib)


# --- the trees our images are made of ------------------------------------------------------


def _busybox_applets(root: Path) -> list[str]:
    # Run the staged busybox through the staged loader, so the host's libc plays no part.
    out = _run(
        [
            str(root / _INTERPRETER),
            "--library-path",
            f"{root}/lib/x86_64-linux-gnu:{root}/usr/lib/x86_64-linux-gnu",
            str(root / "bin/busybox"),
            "--list",
        ]
    )
    return sorted({name for name in out.split() if name and "/" not in name})


def build_busybox_rootfs(root: Path, cache: DebCache) -> None:
    """A busybox userland like the upstream `busybox` image, plus pgrep and ipcs.

    Applets are hard links to /bin/busybox, as in the upstream image: a symlink would make
    critest's masked-path test mask /bin/busybox itself (mount targets follow symlinks), and
    then /bin/sh could not start at all.
    """
    if root.exists():
        shutil.rmtree(root)
    staging = Staging(cache.unpack(BUSYBOX_PACKAGES))
    w = RootfsWriter(root)
    for d in (
        "dev",
        "proc",
        "sys",
        "etc",
        "home",
        "usr/bin",
        "usr/sbin",
        "usr/local/bin",
        "var/log",
        "var/run",
        "var/www",
        "var/spool/mail",
    ):
        w.mkdir(d)
    w.mkdir("root", 0o700)
    w.mkdir("tmp", 0o1777)
    w.install_elf(staging, "bin/busybox")
    for applet in _busybox_applets(root):
        if applet != "busybox":
            w.hardlink("bin/busybox", f"bin/{applet}")
    w.install_elf(staging, "usr/bin/pgrep")
    w.install_elf(staging, "usr/bin/ipcs")
    w.write("etc/passwd", passwd_text(BASE_USERS))
    w.write("etc/group", group_text(BASE_GROUPS))
    w.write("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")


def build_nginx_tree(root: Path, cache: DebCache, lower: Path) -> None:
    """nginx and the libraries `lower` (the busybox tree) lacks: a layer to put on top of it.

    The config is a separate layer (see `nginx_conf`) so that images listening on different
    ports share this one.
    """
    if root.exists():
        shutil.rmtree(root)
    staging = Staging(cache.unpack(NGINX_PACKAGES))
    w = RootfsWriter(root, lower=[lower])
    w.install_elf(staging, "usr/sbin/nginx")
    _, mime = staging.resolve("etc/nginx/mime.types")
    w.copy(mime, "etc/nginx/mime.types", 0o644)
    w.write("usr/share/nginx/html/index.html", _INDEX_HTML)
    # nginx creates its temp directories itself but not their parent.
    w.mkdir("var/lib/nginx")
    w.mkdir("var/log/nginx")
    # As in the upstream nginx images: logs go to the container's stdout/stderr.
    w.symlink("/dev/stdout", "var/log/nginx/access.log")
    w.symlink("/dev/stderr", "var/log/nginx/error.log")


def compile_static(source: Path, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """`gcc -static -Os` `source`, cached by source, flags and compiler version."""
    flags = ["-static", "-Os", "-s", "-Wall", "-Werror"]
    version = _run(["gcc", "-dumpfullversion"]).strip()
    key = hashlib.sha256(
        source.read_bytes() + " ".join(flags).encode() + version.encode()
    ).hexdigest()[:16]
    out = cache_dir / "bin" / f"{source.stem}-{key}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        _run(["gcc", *flags, "-o", str(tmp), str(source)])
        os.replace(tmp, out)
    return out
