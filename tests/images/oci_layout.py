"""Write OCI image layouts whose digests do not depend on when or where they were built.

Theory of operation: an image is a list of layers plus a config. A layer is a sorted list of
`Entry` records (taken from a directory tree or written in memory); it becomes a tar with fixed
mtimes and owners (root unless the entry says otherwise), then a gzip stream with no timestamp
and no file name. Because every input is fixed, the config digest (the image id) and the
manifest digest come out the same on every run and every machine with the same package versions.

`build_layout` adds one image under one or more tags to a layout directory; calling it again
for another image merges into the same `index.json`, so one layout can hold a whole repository.
"""

from __future__ import annotations

import enum
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "FIXED_CREATED",
    "FIXED_MTIME",
    "INDEX_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "REF_NAME_ANNOTATION",
    "Entry",
    "EntryKind",
    "ImageConfig",
    "ImageSpec",
    "Layer",
    "LayoutRef",
    "blob_path",
    "build_layout",
    "config_json",
    "dir_entry",
    "entries_from_dir",
    "file_entry",
    "hardlink_entry",
    "layer_tar",
    "read_layout",
    "symlink_entry",
]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

# 2020-01-01T00:00:00Z. Not 0: some tools treat a zero mtime as "unknown" and substitute now.
FIXED_MTIME = 1577836800
FIXED_CREATED = "2020-01-01T00:00:00Z"
# zlib's output for a given level is stable; level 6 is gzip's default speed/size trade-off.
_GZIP_LEVEL = 6
_CHUNK = 1 << 20


class EntryKind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"


@dataclass(frozen=True)
class Entry:
    """One tar member. `path` is relative to the image root, '/'-separated, no leading slash.

    A FILE takes its bytes from `data`, or else from `source` (read when the tar is written, so
    large trees are not held in memory). SYMLINK and HARDLINK use `target`; a hard link's target
    is another entry's `path` that must come earlier in sorted order.
    """

    path: str
    kind: EntryKind
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes | None = None
    source: Path | None = None
    target: str = ""

    def __post_init__(self) -> None:
        if not self.path or self.path.startswith("/") or ".." in self.path.split("/"):
            raise ValueError(f"entry path must be relative and normalised: {self.path!r}")
        if self.kind is EntryKind.FILE and (self.data is None) == (self.source is None):
            raise ValueError(f"file entry {self.path!r} needs exactly one of data or source")


def file_entry(
    path: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0
) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    return Entry(path.strip("/"), EntryKind.FILE, mode, uid, gid, data=raw)


def dir_entry(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path.strip("/"), EntryKind.DIR, mode, uid, gid)


def symlink_entry(path: str, target: str) -> Entry:
    return Entry(path.strip("/"), EntryKind.SYMLINK, 0o777, target=target)


def hardlink_entry(path: str, target: str) -> Entry:
    return Entry(path.strip("/"), EntryKind.HARDLINK, 0o644, target=target.strip("/"))


def entries_from_dir(
    root: Path, owners: Mapping[str, tuple[int, int]] | None = None
) -> tuple[Entry, ...]:
    """Describe the tree under `root`. Modes come from disk, owners from `owners` (default 0:0).

    Owners are not read from disk so that a tree assembled by a non-root user still produces
    the same layer. Files sharing an inode become hard links to the first path in sorted order.
    """
    owners = owners or {}
    found: list[tuple[str, os.stat_result, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            full = base / name
            rel = full.relative_to(root).as_posix()
            found.append((rel, full.lstat(), full))
    found.sort(key=lambda item: item[0])
    first_by_inode: dict[tuple[int, int], str] = {}
    entries: list[Entry] = []
    for rel, st, full in found:
        uid, gid = owners.get(rel, (0, 0))
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            entries.append(Entry(rel, EntryKind.DIR, mode, uid, gid))
        elif stat.S_ISLNK(st.st_mode):
            entries.append(Entry(rel, EntryKind.SYMLINK, 0o777, uid, gid, target=os.readlink(full)))
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in first_by_inode:
                entries.append(
                    Entry(rel, EntryKind.HARDLINK, mode, uid, gid, target=first_by_inode[key])
                )
                continue
            first_by_inode[key] = rel
            entries.append(Entry(rel, EntryKind.FILE, mode, uid, gid, source=full))
        else:
            raise ValueError(f"unsupported file type in image tree: {full}")
    return tuple(entries)


@dataclass(frozen=True)
class Layer:
    entries: tuple[Entry, ...]
    # Shown in the config's history; documentation only, but it is part of the config digest.
    created_by: str = ""

    @classmethod
    def from_dir(
        cls, root: Path, created_by: str = "", owners: Mapping[str, tuple[int, int]] | None = None
    ) -> Layer:
        return cls(entries_from_dir(root, owners), created_by)

    @classmethod
    def from_entries(cls, entries: Iterable[Entry], created_by: str = "") -> Layer:
        return cls(tuple(entries), created_by)


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image config; empty fields are left out of the JSON."""

    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    stop_signal: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageSpec:
    layers: tuple[Layer, ...]
    config: ImageConfig
    architecture: str = "amd64"
    os: str = "linux"
    created: str = FIXED_CREATED


@dataclass(frozen=True)
class LayoutRef:
    """One `index.json` entry: a tag and the manifest it names."""

    tag: str
    digest: str
    media_type: str
    size: int


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mtime = FIXED_MTIME
    if entry.kind is EntryKind.DIR:
        info.type = tarfile.DIRTYPE
    elif entry.kind is EntryKind.SYMLINK:
        info.type, info.linkname = tarfile.SYMTYPE, entry.target
    elif entry.kind is EntryKind.HARDLINK:
        info.type, info.linkname = tarfile.LNKTYPE, entry.target
    else:
        info.type = tarfile.REGTYPE
    return info


def _check_entries(entries: Sequence[Entry]) -> list[Entry]:
    ordered = sorted(entries, key=lambda e: e.path)
    seen: set[str] = set()
    for entry in ordered:
        if entry.path in seen:
            raise ValueError(f"duplicate layer entry: {entry.path}")
        if entry.kind is EntryKind.HARDLINK and entry.target not in seen:
            raise ValueError(f"hard link {entry.path} precedes its target {entry.target}")
        seen.add(entry.path)
    return ordered


def layer_tar(layer: Layer) -> bytes:
    """The uncompressed tar of a layer: sorted, fixed mtime, numeric owners only."""
    buf = io.BytesIO()
    # PAX so that long names and big ids are representable; tarfile only emits a pax header
    # when a field does not fit, so the output stays byte-stable.
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in _check_entries(layer.entries):
            info = _tarinfo(entry)
            if entry.kind is not EntryKind.FILE:
                tar.addfile(info)
            elif entry.data is not None:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                assert entry.source is not None
                with entry.source.open("rb") as fh:
                    info.size = os.fstat(fh.fileno()).st_size
                    tar.addfile(info, fh)
    return buf.getvalue()


def _gzip(raw: bytes) -> bytes:
    out = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of build-time details.
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=out, compresslevel=_GZIP_LEVEL, mtime=0
    ) as gz:
        for start in range(0, len(raw), _CHUNK):
            gz.write(raw[start : start + _CHUNK])
    return out.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def config_json(spec: ImageSpec, diff_ids: Sequence[str]) -> bytes:
    """The image config document (pure: the layer diff ids are passed in)."""
    cfg = spec.config
    runtime: dict[str, Any] = {}
    if cfg.user:
        runtime["User"] = cfg.user
    if cfg.env:
        runtime["Env"] = list(cfg.env)
    if cfg.entrypoint:
        runtime["Entrypoint"] = list(cfg.entrypoint)
    if cfg.cmd:
        runtime["Cmd"] = list(cfg.cmd)
    if cfg.working_dir:
        runtime["WorkingDir"] = cfg.working_dir
    if cfg.stop_signal:
        runtime["StopSignal"] = cfg.stop_signal
    if cfg.exposed_ports:
        runtime["ExposedPorts"] = {port: {} for port in cfg.exposed_ports}
    if cfg.labels:
        runtime["Labels"] = dict(cfg.labels)
    doc: dict[str, Any] = {
        "architecture": spec.architecture,
        "os": spec.os,
        "created": spec.created,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [
            {"created": spec.created, "created_by": layer.created_by or "stowage test image"}
            for layer in spec.layers
        ],
    }
    return _canonical(doc)


def blob_path(layout: Path, digest: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algo / hexdigest


def _put_blob(layout: Path, data: bytes) -> tuple[str, int]:
    digest = _digest(data)
    path = blob_path(layout, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return digest, len(data)


def _compressed_layer(layer: Layer, cache_dir: Path | None) -> tuple[bytes, str]:
    """(gzip blob, diff id). gzip is the slow step, so it is cached by the uncompressed digest."""
    raw = layer_tar(layer)
    diff_id = _digest(raw)
    if cache_dir is None:
        return _gzip(raw), diff_id
    cached = cache_dir / (diff_id.removeprefix("sha256:") + ".tar.gz")
    if cached.exists():
        return cached.read_bytes(), diff_id
    blob = _gzip(raw)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, cached)
    return blob, diff_id


def read_layout(layout: Path) -> list[LayoutRef]:
    """The tagged manifests of a layout, in index order."""
    index = json.loads((layout / "index.json").read_text())
    return [
        LayoutRef(
            tag=desc.get("annotations", {}).get(REF_NAME_ANNOTATION, ""),
            digest=desc["digest"],
            media_type=desc["mediaType"],
            size=desc["size"],
        )
        for desc in index.get("manifests", [])
    ]


def _write_index(layout: Path, manifest: Mapping[str, Any], tags: Sequence[str]) -> None:
    index_path = layout / "index.json"
    existing: list[dict[str, Any]] = []
    if index_path.exists():
        existing = list(json.loads(index_path.read_text()).get("manifests", []))
    keep = [d for d in existing if d.get("annotations", {}).get(REF_NAME_ANNOTATION) not in tags]
    for tag in tags:
        keep.append({**manifest, "annotations": {REF_NAME_ANNOTATION: tag}})
    keep.sort(key=lambda d: d["annotations"][REF_NAME_ANNOTATION])
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": keep}
    tmp = index_path.with_name("index.json.tmp")
    tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, index_path)


def build_layout(
    spec: ImageSpec,
    out_dir: Path,
    tags: Sequence[str] = ("latest",),
    cache_dir: Path | None = None,
) -> str:
    """Add `spec` to the OCI layout at `out_dir` under `tags`; return the config digest.

    Other tags already in the layout are kept, so several images can share one layout (and
    its blobs). `cache_dir`, if given, keeps compressed layers between runs.
    """
    if not tags:
        raise ValueError("an image needs at least one tag")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    layer_descs: list[dict[str, Any]] = []
    diff_ids: list[str] = []
    for layer in spec.layers:
        blob, diff_id = _compressed_layer(layer, cache_dir)
        digest, size = _put_blob(out_dir, blob)
        layer_descs.append({"mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": size})
        diff_ids.append(diff_id)
    config_digest, config_size = _put_blob(out_dir, config_json(spec, diff_ids))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
        "layers": layer_descs,
    }
    manifest_digest, manifest_size = _put_blob(out_dir, _canonical(manifest))
    descriptor = {
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": manifest_digest,
        "size": manifest_size,
        "platform": {"architecture": spec.architecture, "os": spec.os},
    }
    _write_index(out_dir, descriptor, tags)
    return config_digest
