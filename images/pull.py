"""Pull: resolve a reference, fetch manifest and config, then fetch and unpack missing layers.

Theory of operation: the manifest (and index) and config are small and land in the content
store first. Each layer missing from the snapshotter is then fetched and unpacked in ONE pass:
the HTTP body is written to the content store's ingest file and fed to the tar reader at the
same time, so a pull reads the network once and the disk never re-reads a layer. Layers unpack
in parallel, each into its own directory (overlay needs nothing from the layer below at unpack
time). A layer becomes visible only when both its blob digest and its diff id check out;
anything else discards the blob and the directory, so a failed or killed pull leaves nothing
half-written and the next pull starts clean.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

from images import manifest as mf
from images.content import BlobWriter, ContentStore
from images.errors import BlobMismatchError, LayerError, ManifestError, UnsafeLayerError
from images.layers import unpack_layer
from images.snapshots import Snapshotter

__all__ = ["ChunkReader", "ImageContent", "LayerFetcher", "unpack_image"]

# Opens a layer blob as an iterator of byte chunks (from a registry, or from the content store).
LayerFetcher = Callable[[mf.Descriptor], AbstractContextManager[Iterator[bytes]]]


class ChunkReader(io.RawIOBase):
    """A read-only binary stream over an iterator of chunks that copies what it reads into a
    blob writer: the tee that lets one pass both store and unpack a layer."""

    def __init__(self, chunks: Iterator[bytes], sink: BlobWriter | None) -> None:
        self._chunks = chunks
        self._sink = sink
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
            if self._sink is not None:
                self._sink.write(self._buf)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def drain(self) -> None:
        """Reads what the tar reader left (end-of-archive padding) so the digest covers it."""
        while self.readinto(bytearray(1 << 20)):
            pass


@dataclass(frozen=True)
class ImageContent:
    """What unpacking produced: the image's config and the chain id of its top layer."""

    config_digest: str
    config: mf.ImageConfig
    chain_id: str | None
    layer_digests: tuple[str, ...]


def _unpack_one(
    content: ContentStore,
    snapshots: Snapshotter,
    fetch: LayerFetcher,
    layer: mf.Descriptor,
    diff_id: str,
    chain_id: str,
    parent: str | None,
) -> None:
    with snapshots.extract(chain_id, parent) as target:
        if target is None:
            return
        with content.ingest(layer.digest, layer.size) as writer, fetch(layer) as chunks:
            reader = ChunkReader(chunks, writer)
            stream: BinaryIO = io.BufferedReader(reader, buffer_size=1 << 20)
            try:
                stats = unpack_layer(stream, layer.media_type, target)
            except UnsafeLayerError:
                raise
            except LayerError:
                # A blob that is not a valid archive is most often a damaged download: when
                # its digest is wrong too, that is the error to report.
                if writer is not None:
                    reader.drain()
                    writer.verify()
                raise
            reader.drain()
            stream.read()
            if writer is not None:
                writer.commit()
        if stats.diff_id != diff_id:
            raise BlobMismatchError(
                f"layer {layer.digest} unpacks to {stats.diff_id}, but the image config says "
                f"{diff_id}"
            )


def unpack_image(
    content: ContentStore,
    snapshots: Snapshotter,
    config_digest: str,
    manifest: mf.Manifest,
    fetch: LayerFetcher,
    parallel: int = 3,
) -> ImageContent:
    """Makes every layer of ``manifest`` present as a snapshot; its config must be in content."""
    config = mf.parse_image_config(content.read(config_digest))
    diff_ids = list(config.diff_ids)
    layers = list(manifest.layers)
    if len(diff_ids) != len(layers):
        raise ManifestError(
            f"image has {len(layers)} layers but its config lists {len(diff_ids)} diff ids"
        )
    chains = mf.chain_ids(diff_ids)
    jobs = [
        (layer, diff_ids[i], chains[i], chains[i - 1] if i else None)
        for i, layer in enumerate(layers)
        if not snapshots.has_layer(chains[i])
    ]
    if jobs:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(jobs)))) as pool:
            done = [pool.submit(_unpack_one, content, snapshots, fetch, *job) for job in jobs]
            for future in done:
                future.result()
    return ImageContent(
        config_digest=config_digest,
        config=config,
        chain_id=chains[-1] if chains else None,
        layer_digests=tuple(layer.digest for layer in layers),
    )
