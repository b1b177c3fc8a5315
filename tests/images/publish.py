"""Build every catalog image (cached) and push it to a registry under its upstream path."""

from __future__ import annotations

import os
from pathlib import Path

from tests.images.build import build_images
from tests.images.push import push_all
from tests.images.rootfs import DEFAULT_CACHE

__all__ = ["publish_catalog"]


def publish_catalog(registry_url: str, cache_dir: Path = DEFAULT_CACHE) -> int:
    """Returns the number of tags pushed."""
    out = Path(os.path.join(cache_dir, "layouts"))
    built = build_images(out, cache_dir)
    return len(push_all({b.ref: str(b.layout) for b in built}, registry_url))
