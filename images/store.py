"""The image store: what the CRI image service (and the CLI) use. Ties the content store,
snapshots, metadata and the registry client together; every decision lives in the modules it
calls, this one sequences them.

Naming follows containerd's CRI plugin: an image's id is its config digest; a pull by tag records
``<name>:<tag>`` as a repo tag and ``<name>@<manifest digest>`` as a repo digest; a pull by digest
records only the repo digest. An image is found by id (``sha256:<hex>``, the bare hex, or a
unique prefix of at least 12 hex digits), by tag or by repo digest. Removing an image removes it
under every name at once. Layers and blobs are freed by ``gc`` once no image and no container
layer refers to them.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from images import manifest as mf
from images.auth import Credentials
from images.content import ContentStore
from images.errors import ImageNotFoundError, InvalidReferenceError
from images.hosts import load_hosts
from images.metadata import ImageRecord, MetadataStore
from images.pull import ImageContent, LayerFetcher, unpack_image
from images.reference import Reference, normalize_image_id, parse_reference
from images.registry import RegistryClient
from images.snapshots import Snapshotter

__all__ = ["FsUsage", "ImageStore"]

log = logging.getLogger("stowage.images")

_ACCEPT = [
    mf.MEDIA_TYPE_OCI_INDEX,
    mf.MEDIA_TYPE_OCI_MANIFEST,
    mf.MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    mf.MEDIA_TYPE_DOCKER_MANIFEST,
]
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FsUsage:
    image_mountpoint: str
    image_bytes: int
    image_inodes: int
    container_mountpoint: str
    container_bytes: int
    container_inodes: int


def _file_chunks(f: object) -> Iterator[bytes]:
    read = f.read  # type: ignore[attr-defined]
    while chunk := read(_CHUNK):
        yield chunk


class ImageStore:
    def __init__(
        self,
        root: str,
        *,
        registry_config_dir: str = "/etc/stowage/certs.d",
        max_concurrent_downloads: int = 3,
        client: RegistryClient | None = None,
        platform: mf.Platform | None = None,
    ) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)
        self.content = ContentStore(os.path.join(root, "content"))
        self.snapshots = Snapshotter(os.path.join(root, "snapshots"))
        self.meta = MetadataStore(os.path.join(root, "metadata.db"))
        self._parallel = max_concurrent_downloads
        self._client = client or RegistryClient(
            hosts_resolver=lambda host: load_hosts(registry_config_dir, host)
        )
        self._platform = platform or mf.host_platform()
        self._layer_usage: dict[str, tuple[int, int]] = {}
        self._gc_lock = threading.Lock()
        # Pulls and imports in flight own layers and blobs that no image names yet: garbage
        # collection waits for them (it is deferred to the end of the last one).
        self._inflight = 0
        self._gc_pending = False
        self._inflight_lock = threading.Lock()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Marks a pull or import in flight; a running collection finishes before it starts."""
        with self._gc_lock, self._inflight_lock:
            self._inflight += 1
        try:
            yield
        finally:
            with self._inflight_lock:
                self._inflight -= 1
                run_gc = self._inflight == 0 and self._gc_pending
            if run_gc:
                self.gc()

    def recover(self) -> None:
        """Start-up: drop what interrupted ingests and unpacks left behind."""
        self.content.sweep_ingest()
        self.snapshots.sweep()

    # lookup

    def _resolve_id(self, name: str) -> str | None:
        image_id = normalize_image_id(name)
        if image_id is not None:
            return image_id if self.meta.get(image_id) is not None else None
        hexpart = name.removeprefix("sha256:")
        if len(hexpart) >= 12 and all(c in "0123456789abcdef" for c in hexpart):
            matches = self.meta.find_by_prefix("sha256:" + hexpart)
            if len(matches) == 1:
                return matches[0]
        try:
            ref = parse_reference(name)
        except InvalidReferenceError:
            return None
        return self.meta.resolve_name(str(ref))

    def status(self, name: str) -> ImageRecord | None:
        image_id = self._resolve_id(name)
        return None if image_id is None else self.meta.get(image_id)

    def list(self, name: str | None = None) -> list[ImageRecord]:
        if name:
            rec = self.status(name)
            return [] if rec is None else [rec]
        return self.meta.list()

    # pull

    def _fetcher(self, ref: Reference, creds: Credentials | None) -> LayerFetcher:
        @contextlib.contextmanager
        def fetch(layer: mf.Descriptor) -> Iterator[Iterator[bytes]]:
            if self.content.exists(layer.digest):
                with self.content.open(layer.digest) as f:
                    yield _file_chunks(f)
                return
            # The content store verifies digest and size as it ingests: no second hash here.
            with self._client.fetch_blob(
                ref.domain, ref.path, layer.digest, layer.size, verify=False, credentials=creds
            ) as stream:
                yield iter(stream)

        return fetch

    def _fetch_small_blob(
        self, ref: Reference, desc: mf.Descriptor, creds: Credentials | None
    ) -> bytes:
        if not self.content.exists(desc.digest):
            with self._client.fetch_blob(
                ref.domain, ref.path, desc.digest, desc.size, credentials=creds
            ) as stream:
                data = stream.read()
            self.content.write_blob(data, desc.digest)
        return self.content.read(desc.digest)

    def pull(self, name: str, credentials: Credentials | None = None) -> ImageRecord:
        ref = parse_reference(name)
        with self.writing():
            return self._pull(ref, credentials)

    def _pull(self, ref: Reference, credentials: Credentials | None) -> ImageRecord:
        target = ref.digest or ref.tag or "latest"
        resolved = self._client.resolve(
            ref.domain, ref.path, target, _ACCEPT, credentials=credentials
        )
        self.content.write_blob(resolved.body, resolved.digest)
        top_digest = resolved.digest
        media_type, body = resolved.media_type, resolved.body
        if mf.is_index(media_type):
            chosen = mf.select_platform(mf.parse_index(body, media_type), self._platform)
            child = self._client.resolve(
                ref.domain, ref.path, chosen.digest, _ACCEPT, credentials=credentials
            )
            self.content.write_blob(child.body, child.digest)
            media_type, body = child.media_type, child.body
        manifest = mf.parse_manifest(body, media_type)
        self._fetch_small_blob(ref, manifest.config, credentials)
        unpacked = unpack_image(
            self.content,
            self.snapshots,
            manifest.config.digest,
            manifest,
            self._fetcher(ref, credentials),
            self._parallel,
        )
        names = [(f"{ref.name}@{top_digest}", "digest")]
        if ref.digest is None:
            names.append((f"{ref.name}:{ref.tag or 'latest'}", "tag"))
        rec = self._record(unpacked, top_digest, manifest, body)
        self.meta.put(rec, names)
        log.info("pulled", extra={"image": str(ref), "id": rec.id, "manifest": top_digest})
        stored = self.meta.get(rec.id)
        if stored is None:  # removed concurrently; report what was pulled
            return rec
        return stored

    def _record(
        self, unpacked: ImageContent, manifest_digest: str, manifest: mf.Manifest, body: bytes
    ) -> ImageRecord:
        size = len(body) + manifest.config.size + sum(layer.size for layer in manifest.layers)
        blobs = (manifest_digest, manifest.config.digest, *unpacked.layer_digests)
        return ImageRecord(
            id=unpacked.config_digest,
            manifest_digest=manifest_digest,
            size=size,
            chain_id=unpacked.chain_id,
            blobs=blobs,
            config=mf.config_json(self.content.read(unpacked.config_digest)),
            pinned=False,
            created_ns=time.time_ns(),
        )

    def add_unpacked(
        self,
        manifest_digest: str,
        manifest: mf.Manifest,
        names: builtins.list[tuple[str, str]],
        extra_blobs: tuple[str, ...] = (),
    ) -> ImageRecord:
        """Registers an image whose blobs are all in the content store (an import)."""
        with self.writing():
            return self._add_unpacked(manifest_digest, manifest, names, extra_blobs)

    def _add_unpacked(
        self,
        manifest_digest: str,
        manifest: mf.Manifest,
        names: builtins.list[tuple[str, str]],
        extra_blobs: tuple[str, ...],
    ) -> ImageRecord:

        @contextlib.contextmanager
        def fetch(layer: mf.Descriptor) -> Iterator[Iterator[bytes]]:
            with self.content.open(layer.digest) as f:
                yield _file_chunks(f)

        unpacked = unpack_image(
            self.content, self.snapshots, manifest.config.digest, manifest, fetch, self._parallel
        )
        rec = self._record(unpacked, manifest_digest, manifest, self.content.read(manifest_digest))
        if extra_blobs:
            rec = ImageRecord(**{**rec.__dict__, "blobs": rec.blobs + extra_blobs})
        self.meta.put(rec, names)
        stored = self.meta.get(rec.id)
        return stored if stored is not None else rec

    # removal and garbage collection

    def remove(self, name: str) -> None:
        """Removes the image under all its names; an unknown image is not an error (CRI)."""
        image_id = self._resolve_id(name)
        if image_id is None:
            return
        self.meta.delete(image_id)
        self.gc()

    def gc(self) -> None:
        """Frees blobs and layers no image and no container layer refers to."""
        with self._inflight_lock:
            if self._inflight:
                self._gc_pending = True
                return
            self._gc_pending = False
        with self._gc_lock:
            images = self.meta.list()
            keep_blobs: set[str] = set()
            keep_layers: set[str] = set()
            tops = [rec.chain_id for rec in images]
            tops += list(self.snapshots.active().values())
            for rec in images:
                keep_blobs.update(rec.blobs)
            for top in tops:
                current = top
                while current is not None and current not in keep_layers:
                    keep_layers.add(current)
                    try:
                        current = self.snapshots.parent(current)
                    except ImageNotFoundError:
                        break
            for digest in list(self.content.list()):
                if digest not in keep_blobs:
                    self.content.delete(digest)
            for chain_id in self.snapshots.layers():
                if chain_id not in keep_layers:
                    self._layer_usage.pop(chain_id, None)
                    self.snapshots.remove_layer(chain_id)

    # usage

    def fs_usage(self) -> FsUsage:
        image_bytes, image_inodes = self.content.usage()
        for chain_id in self.snapshots.layers():
            if chain_id not in self._layer_usage:  # layers never change: measure each once
                self._layer_usage[chain_id] = self.snapshots.layer_usage(chain_id)
            b, i = self._layer_usage[chain_id]
            image_bytes += b
            image_inodes += i
        cbytes = cinodes = 0
        for key in self.snapshots.active():
            with contextlib.suppress(FileNotFoundError):
                b, i = self.snapshots.usage(key)
                cbytes += b
                cinodes += i
        return FsUsage(
            image_mountpoint=self.snapshots.root,
            image_bytes=image_bytes,
            image_inodes=image_inodes,
            container_mountpoint=self.snapshots.root,
            container_bytes=cbytes,
            container_inodes=cinodes,
        )

    def close(self) -> None:
        self.meta.close()
