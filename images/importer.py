"""Import of image archives: an OCI image layout or a docker-archive (``docker save``) tarball.

What ``ctr images import`` and ``podman load`` do: every blob is copied into the content store
(verified against its digest), each image's layers are unpacked and it is named after the
archive's annotations (``io.containerd.image.name``, else an ``org.opencontainers.image.ref.name``
that is a whole reference) or the docker archive's ``RepoTags``.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass

from images import manifest as mf
from images.errors import ImageError, InvalidReferenceError, ManifestError
from images.metadata import ImageRecord
from images.reference import parse_reference
from images.store import ImageStore

__all__ = ["import_archive"]

_CONTAINERD_NAME = "io.containerd.image.name"
_OCI_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class _Member:
    tar: tarfile.TarFile

    def read(self, name: str) -> bytes:
        member = self._get(name)
        f = self.tar.extractfile(member)
        if f is None:
            raise ImageError(f"archive entry {name} is not a file")
        with f:
            return f.read()

    def _get(self, name: str) -> tarfile.TarInfo:
        for candidate in (name, "./" + name):
            try:
                return self.tar.getmember(candidate)
            except KeyError:
                continue
        raise ImageError(f"archive has no entry {name}")

    def has(self, name: str) -> bool:
        try:
            self._get(name)
        except ImageError:
            return False
        return True

    def copy_blob(self, store: ImageStore, digest: str, size: int | None) -> None:
        if store.content.exists(digest):
            return
        alg, _, hexpart = digest.partition(":")
        f = self.tar.extractfile(self._get(f"blobs/{alg}/{hexpart}"))
        if f is None:
            raise ImageError(f"blob {digest} is not a file in the archive")
        with f:
            store.content.copy_in(f, digest, size)  # type: ignore[arg-type]


def _name_from_annotations(annotations: dict[str, str], base_name: str | None) -> str | None:
    """The image's name: a whole reference in the annotations, or ``base_name`` plus a bare tag
    in ``ref.name`` (what ``ctr images import --base-name`` does)."""
    for key in (_CONTAINERD_NAME, _OCI_REF_NAME):
        value = annotations.get(key)
        if not value:
            continue
        if "/" in value or "." in value.split(":", 1)[0]:
            try:
                return str(parse_reference(value))
            except InvalidReferenceError:
                continue
        if key == _OCI_REF_NAME and base_name:
            return str(parse_reference(f"{base_name}:{value}"))
    return None


def _names(ref: str | None, manifest_digest: str) -> list[tuple[str, str]]:
    if ref is None:
        return []
    parsed = parse_reference(ref)
    names = [(f"{parsed.name}@{manifest_digest}", "digest")]
    if parsed.digest is None:
        names.append((str(parsed), "tag"))
    return names


def _import_manifest(
    store: ImageStore, arc: _Member, desc: mf.Descriptor, name: str | None, platform: mf.Platform
) -> ImageRecord:
    arc.copy_blob(store, desc.digest, desc.size)
    body = store.content.read(desc.digest)
    top = desc.digest
    media_type = desc.media_type
    if mf.is_index(media_type):
        chosen = mf.select_platform(mf.parse_index(body, media_type), platform)
        arc.copy_blob(store, chosen.digest, chosen.size)
        body = store.content.read(chosen.digest)
        media_type = chosen.media_type
    manifest = mf.parse_manifest(body, media_type)
    arc.copy_blob(store, manifest.config.digest, manifest.config.size)
    for layer in manifest.layers:
        arc.copy_blob(store, layer.digest, layer.size)
    return store.add_unpacked(top, manifest, _names(name, top))


def _import_oci(
    store: ImageStore, arc: _Member, platform: mf.Platform, base_name: str | None
) -> list[ImageRecord]:
    index = mf.parse_index(arc.read("index.json"), mf.MEDIA_TYPE_OCI_INDEX)
    return [
        _import_manifest(
            store, arc, desc, _name_from_annotations(dict(desc.annotations), base_name), platform
        )
        for desc in index.manifests
    ]


def _import_docker(store: ImageStore, arc: _Member) -> list[ImageRecord]:
    try:
        entries = json.loads(arc.read("manifest.json"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"docker archive manifest.json is not JSON: {exc}") from exc
    out: list[ImageRecord] = []
    for entry in entries:
        config_bytes = arc.read(entry["Config"])
        config_digest = store.content.write_blob(config_bytes)
        layers = []
        for path in entry["Layers"]:
            data = arc.read(path)
            digest = store.content.write_blob(data, "sha256:" + hashlib.sha256(data).hexdigest())
            media = (
                mf.MEDIA_TYPE_DOCKER_LAYER_GZIP
                if data[:2] == b"\x1f\x8b"
                else mf.MEDIA_TYPE_OCI_LAYER
            )
            layers.append({"mediaType": media, "digest": digest, "size": len(data)})
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mf.MEDIA_TYPE_DOCKER_MANIFEST,
                "config": {
                    "mediaType": mf.MEDIA_TYPE_DOCKER_CONFIG,
                    "digest": config_digest,
                    "size": len(config_bytes),
                },
                "layers": layers,
            },
            separators=(",", ":"),
        ).encode()
        manifest_digest = store.content.write_blob(body)
        manifest = mf.parse_manifest(body, mf.MEDIA_TYPE_DOCKER_MANIFEST)
        tags = entry.get("RepoTags") or [None]
        rec = None
        for tag in tags:
            rec = store.add_unpacked(manifest_digest, manifest, _names(tag, manifest_digest))
        assert rec is not None  # noqa: S101 - tags is never empty
        out.append(rec)
    return out


def import_archive(
    store: ImageStore,
    path: str,
    platform: mf.Platform | None = None,
    base_name: str | None = None,
) -> list[ImageRecord]:
    want = platform or mf.host_platform()
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(f"cannot read image archive {path}: {exc}") from exc
    with tar, store.writing():
        arc = _Member(tar)
        if arc.has("index.json"):
            return _import_oci(store, arc, want, base_name)
        if arc.has("manifest.json"):
            return _import_docker(store, arc)
    raise ImageError(f"{path} is neither an OCI image layout nor a docker archive")
